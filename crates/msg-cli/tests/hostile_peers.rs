//! The peer port is open to the world: silent connections, from another
//! address or from the right one without a token, must not keep a real
//! private session from starting.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use tokio::net::{TcpSocket, TcpStream};

/// Opens `n` connections from `from` (an address of this machine) to `to`
/// and keeps them open, saying nothing.
async fn silent(from: &str, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        if let Ok(stream) = socket.connect(to).await {
            open.push(stream);
        }
    }
    open
}

#[test]
fn silent_connections_do_not_starve_a_real_private_session() {
    let server = Server::start();
    let port = free_port();
    let luke = User::new("luke", &server);
    luke.config(&format!("notify = false\npeer_port = {port}\n"));
    luke.login().ok();
    let hans = User::new("hans", &server);
    hans.config("notify = false\n");
    hans.login().ok();
    let peer: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // 200 from another address, 200 from the right one without a token.
    let mut held = runtime.block_on(silent("127.0.0.2", peer, 200));
    assert!(held.len() >= 100, "the flood got in: {}", held.len());
    held.extend(runtime.block_on(silent("127.0.0.1", peer, 200)));
    // And more from elsewhere while the session is being set up.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = runtime.spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) && held.len() < 2000 {
                held.extend(silent("127.0.0.2", peer, 10).await);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            held
        }
    });

    let (_watch, luke_sees) = luke.watch(false);
    let started = hans.background(&["private", "start", "luke"]);
    luke_sees.until(|l| l == "hans would like to private message");
    luke.msg(&["private", "accept", "hans"]).ok();
    assert_eq!(
        started.join().ok().out(),
        "Start private messaging with luke"
    );
    hans.msg(&["private", "send", "luke", "through the flood"])
        .ok();
    luke_sees.until(|l| l == "hans(private): through the flood");

    stop.store(true, Ordering::SeqCst);
    let more = runtime.block_on(flood).unwrap();
    drop((held, more));
}
