//! Desktop notifications through the freedesktop D-Bus service (notify-rust).
//!
//! A missing notification service (no session bus, no daemon) must never
//! disturb messaging: the failure is logged once and later ones silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct Notifier {
    enabled: bool,
    warned: Arc<AtomicBool>,
}

impl Notifier {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Raises a notification in the background; never fails the caller.
    pub fn notify(&self, title: &str, body: &str) {
        if !self.enabled {
            return;
        }
        let (title, body) = (title.to_owned(), body.to_owned());
        let warned = Arc::clone(&self.warned);
        // notify-rust blocks on D-Bus round trips; keep them off the runtime.
        tokio::task::spawn_blocking(move || {
            let shown = notify_rust::Notification::new()
                .appname("msg")
                .summary(&title)
                .body(&body)
                .show();
            match shown {
                Ok(_) => tracing::debug!("notification raised"),
                Err(e) if !warned.swap(true, Ordering::Relaxed) => {
                    tracing::warn!("desktop notifications unavailable: {e}");
                }
                Err(e) => tracing::debug!("notification failed: {e}"),
            }
        });
    }
}
