//! A panic in any task stops the daemon cleanly (the shutdown every part
//! watches, and a failure that makes msgd exit non-zero) instead of leaving
//! half a daemon behind. Its own test binary: the panic hook is global.

use std::sync::Arc;
use std::time::Duration;

use msg_daemon::inbox::Inbox;
use msg_daemon::notifier::Notifier;
use msg_daemon::state::Shared;
use msg_local::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_any_task_stops_the_daemon() {
    let shared = Arc::new(Shared::new(
        Inbox::open_in_memory().unwrap(),
        Notifier::new(false),
        Config::default(),
    ));
    msg_daemon::daemon::stop_on_panic(Arc::clone(&shared));
    assert!(!shared.shutdown.is_cancelled());
    let task = tokio::spawn(async { panic!("a bug") });
    assert!(task.await.unwrap_err().is_panic());
    tokio::time::timeout(Duration::from_secs(10), shared.shutdown.cancelled())
        .await
        .expect("the daemon stops");
    let failure = shared.failure().expect("and says it failed");
    assert!(failure.starts_with("a task panicked at "), "{failure}");
    assert!(failure.contains("panic_stops.rs"), "{failure}");
}
