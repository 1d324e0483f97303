//! Running a scenario's two sides the same way: the msg side against a
//! fresh msg-server, then (unless `--no-mqtt`) the Mosquitto side against a
//! fresh broker, one after the other so they never share the machine, each
//! server's peak memory read before it is stopped.

use anyhow::Context;

use crate::env::Env;
use crate::launch::{Mosquitto, MsgServer};
use crate::report::Figure;

/// What one side measured, and its server's peak resident memory (KiB).
pub struct Run<T> {
    pub value: T,
    pub peak_kib: Option<u64>,
}

/// Both sides of a scenario.
pub struct Compared<T> {
    pub msg: Run<T>,
    /// `None` with `--no-mqtt`.
    pub mosquitto: Option<Run<T>>,
}

impl MsgServer {
    /// Ends the msg side: reads the peak memory, then stops the server.
    pub fn finish<T>(self, value: T) -> Run<T> {
        Run {
            peak_kib: self.peak_kib(),
            value,
        }
    }
}

impl Mosquitto {
    /// Ends the Mosquitto side: reads the peak memory, then stops the broker.
    pub fn finish<T>(self, value: T) -> Run<T> {
        Run {
            peak_kib: self.peak_kib(),
            value,
        }
    }
}

/// Runs `msg` against a new msg-server that knows `users` bench accounts,
/// then `mosquitto` against a new broker. Each side owns its server and
/// ends with `finish`, so it decides what outlives the server (the idle
/// scenario closes its sessions only after the server is gone).
pub async fn compare<T>(
    env: &Env,
    users: usize,
    msg: impl AsyncFnOnce(MsgServer) -> anyhow::Result<Run<T>>,
    mosquitto: impl AsyncFnOnce(Mosquitto) -> anyhow::Result<Run<T>>,
) -> anyhow::Result<Compared<T>> {
    let server = MsgServer::start(env, users)?;
    let msg = msg(server).await.context("msg side")?;
    let mosquitto = if env.cli.no_mqtt {
        None
    } else {
        let broker = Mosquitto::start(env)?;
        Some(mosquitto(broker).await.context("mosquitto side")?)
    };
    Ok(Compared { msg, mosquitto })
}

impl<T> Compared<T> {
    /// A figure whose two values `pick` takes from each side's result, with
    /// each side's peak memory.
    pub fn figure(
        &self,
        scenario: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        pick: impl Fn(&T) -> Option<f64>,
    ) -> Figure {
        Figure::new(scenario, name, unit)
            .values(
                pick(&self.msg.value),
                self.mosquitto.as_ref().and_then(|run| pick(&run.value)),
            )
            .rss(
                self.msg.peak_kib,
                self.mosquitto.as_ref().and_then(|run| run.peak_kib),
            )
    }
}
