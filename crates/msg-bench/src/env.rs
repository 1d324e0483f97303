//! Where a run happens: the command line and the binaries it drives. A leaf
//! module, so that the scenarios and the launchers can see it without
//! depending on the command-line front end.

use std::path::PathBuf;

use crate::args::Cli;

/// Everything a scenario needs to know about where to run.
pub struct Env {
    pub cli: Cli,
    pub server_bin: PathBuf,
    /// Directory of this executable, where `msg` and `msgd` are looked for.
    pub bin_dir: PathBuf,
}
