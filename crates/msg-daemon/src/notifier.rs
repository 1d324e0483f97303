//! Desktop notifications through the freedesktop D-Bus service (notify-rust).
//!
//! A missing notification service (no session bus, no daemon) must never
//! disturb messaging: the failure is logged once and later ones silently.
//!
//! What others wrote is shown, not obeyed: the body is escaped for the
//! service's markup (a `<img src="file:///...">` in a message is text), and
//! control characters become visible escapes in both title and body. A burst
//! (a flood of broadcasts, hundreds of private-session requests) does not
//! become hundreds of bubbles: at most [`BURST`] notifications show in each
//! [`WINDOW`]; the rest are counted and summed up in one notification when
//! the window ends.

use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Notifications shown per window before the rest are summed up.
pub const BURST: u32 = 5;
/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Notifier {
    enabled: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Whether the service's absence was logged already.
    warned: bool,
    window_start: Option<Instant>,
    shown: u32,
    /// Held back in this window; one summary follows when it ends.
    suppressed: u32,
}

/// What to do with one notification.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Show,
    /// Held back; the first one held back in a window schedules the summary.
    Hold {
        schedule_summary: bool,
    },
}

impl State {
    fn admit(&mut self, now: Instant) -> Admit {
        let fresh = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW);
        if fresh && self.suppressed == 0 {
            self.window_start = Some(now);
            self.shown = 0;
        }
        if self.shown < BURST && self.suppressed == 0 {
            self.shown += 1;
            Admit::Show
        } else {
            self.suppressed += 1;
            Admit::Hold {
                schedule_summary: self.suppressed == 1,
            }
        }
    }

    /// The window has ended: how many were held back, and a new window.
    fn take_suppressed(&mut self, now: Instant) -> u32 {
        self.window_start = Some(now);
        self.shown = 0;
        std::mem::take(&mut self.suppressed)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Notifier {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Raises a notification in the background, or counts it for the
    /// window's summary; never fails the caller. Needs a tokio runtime.
    pub fn notify(&self, title: &str, body: &str) {
        if !self.enabled {
            return;
        }
        let admitted = lock(&self.state).admit(Instant::now());
        match admitted {
            Admit::Show => self.show(visible(title), markup_escaped(body)),
            Admit::Hold { schedule_summary } => {
                if schedule_summary {
                    self.summarise_later();
                }
            }
        }
    }

    /// At the end of the window, one notification for everything held back.
    fn summarise_later(&self) {
        let notifier = self.clone();
        tokio::spawn(async move {
            let end = lock(&notifier.state)
                .window_start
                .map_or_else(Instant::now, |start| start + WINDOW);
            tokio::time::sleep_until(end).await;
            let held = lock(&notifier.state).take_suppressed(Instant::now());
            if held > 0 {
                let body = if held == 1 {
                    "1 more item arrived; see `msg inbox`".to_owned()
                } else {
                    format!("{held} more items arrived; see `msg inbox`")
                };
                notifier.show("msg".to_owned(), body);
            }
        });
    }

    fn show(&self, title: String, body: String) {
        let state = Arc::clone(&self.state);
        // notify-rust blocks on D-Bus round trips; keep them off the runtime.
        tokio::task::spawn_blocking(move || {
            let shown = notify_rust::Notification::new()
                .appname("msg")
                .summary(&title)
                .body(&body)
                .show();
            match shown {
                Ok(_) => tracing::debug!("notification raised"),
                Err(e) => {
                    let first = !std::mem::replace(&mut lock(&state).warned, true);
                    if first {
                        tracing::warn!("desktop notifications unavailable: {e}");
                    } else {
                        tracing::debug!("notification failed: {e}");
                    }
                }
            }
        });
    }
}

/// Control and bidi characters as visible escapes (`\x1b`, `\u{202e}`), so
/// that a notification shows what was sent and nothing reorders it.
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c == '\n' {
            out.push(c);
        } else if c.is_control() || bidi {
            let code = u32::from(c);
            if code < 0x80 {
                let _ = write!(out, "\\x{code:02x}");
            } else {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The body as text inside the notification service's markup (a subset of
/// HTML): `<`, `>` and `&` escaped, after [`visible`].
fn markup_escaped(text: &str) -> String {
    let visible = visible(text);
    let mut out = String::with_capacity(visible.len());
    for c in visible.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_shown_as_text() {
        assert_eq!(
            markup_escaped("<img src=\"file:///etc/passwd\"/> & <b>hi</b>"),
            "&lt;img src=\"file:///etc/passwd\"/&gt; &amp; &lt;b&gt;hi&lt;/b&gt;"
        );
        assert_eq!(
            markup_escaped("a\x1b[31mb\u{202e}c"),
            "a\\x1b[31mb\\u{202e}c"
        );
        assert_eq!(
            visible("<b>luke</b>"),
            "<b>luke</b>",
            "titles are plain text"
        );
    }

    #[test]
    fn a_burst_shows_a_few_then_holds_the_rest_for_one_summary() {
        let mut state = State::default();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(state.admit(start), Admit::Show);
        }
        assert_eq!(
            state.admit(start),
            Admit::Hold {
                schedule_summary: true
            }
        );
        for _ in 0..100 {
            assert_eq!(
                state.admit(start + Duration::from_secs(1)),
                Admit::Hold {
                    schedule_summary: false
                }
            );
        }
        // Still held after the window until the summary went out.
        assert!(matches!(
            state.admit(start + WINDOW * 2),
            Admit::Hold { .. }
        ));
        assert_eq!(state.take_suppressed(start + WINDOW * 2), 102);
        assert_eq!(state.admit(start + WINDOW * 2), Admit::Show);
    }

    #[test]
    fn a_quiet_stream_is_never_held() {
        let mut state = State::default();
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(state.admit(start + WINDOW * i), Admit::Show);
        }
    }
}
