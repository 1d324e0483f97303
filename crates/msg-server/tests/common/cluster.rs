//! Several msg-server nodes of one cluster, on the engines of
//! [`super::services`].

pub use super::services::Services;
use super::{Env, Server};

/// Nodes of one cluster, each with its own directory, sharing the
/// credentials file of the first.
pub struct Cluster {
    pub store: String,
    pub nats: String,
    pub envs: Vec<Env>,
}

impl Cluster {
    pub async fn new(services: &Services, nodes: usize) -> Self {
        Self {
            store: services.new_database().await,
            nats: services.nats.clone(),
            envs: (0..nodes).map(|_| Env::new()).collect(),
        }
    }

    /// The arguments that make a server node `index` of this cluster.
    pub fn node_args(&self, index: usize) -> Vec<String> {
        vec![
            "--store".into(),
            self.store.clone(),
            "--cluster".into(),
            self.nats.clone(),
            "--node-name".into(),
            format!("n{index}"),
        ]
    }

    /// Starts node `index` with `extra` arguments.
    pub fn start(&self, index: usize, extra: &[&str]) -> Server {
        let mut args = self.node_args(index);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.envs[index].start(&args)
    }

    /// Starts every node at once (each waits for its listening line on a
    /// thread of its own).
    pub fn start_all(&self, extra: &[&str]) -> Vec<Server> {
        std::thread::scope(|scope| {
            let starts: Vec<_> = (0..self.envs.len())
                .map(|index| scope.spawn(move || self.start(index, extra)))
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().expect("a node started"))
                .collect()
        })
    }
}
