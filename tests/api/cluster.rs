//! A Postgres cluster a test owns: made with `initdb` in a temporary folder, on a port of its
//! own, started and stopped by the test (for TLS settings, restarts and crashes that must not
//! touch the shared server every other test uses). Postgres refuses to run as root: as root,
//! the cluster runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    /// Handed over by [`Cluster::detach`]: left running when dropped.
    detached: bool,
}

fn bin_dir() -> PathBuf {
    let out = Command::new("pg_config").arg("--bindir").output();
    if let Ok(out) = out
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    // Debian keeps the server binaries out of PATH.
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (initdb, pg_ctl) are needed for this test")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no initdb under /usr/lib/postgresql")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// A new cluster (not started) with `conf` appended to postgresql.conf and `files` written
    /// into its data folder (private to the server's user).
    pub fn init(conf: &str, files: &[(&str, &str)]) -> Self {
        Self::init_with(bin_dir(), conf, files)
    }

    /// [`Cluster::init`] with the server binaries in `bin`.
    pub fn init_with(bin: PathBuf, conf: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let cluster = Self {
            port: free_port(),
            bin,
            as_postgres,
            dir,
            detached: false,
        };
        if as_postgres {
            cluster.give_to_postgres(cluster.dir.path());
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents).unwrap();
            if as_postgres {
                cluster.give_to_postgres(&path);
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        cluster.append_conf(&format!("listen_addresses = '127.0.0.1'\n{conf}"));
        cluster
    }

    /// Appends its own port and socket folder, then `extra`, to postgresql.conf: later
    /// settings win over earlier ones (a replica's copy of its primary's included).
    fn append_conf(&self, extra: &str) {
        let path = self.data().join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path).unwrap();
        conf.push_str(&format!(
            "\nport = {}\nunix_socket_directories = '{}'\n{extra}\n",
            self.port,
            self.dir.path().display()
        ));
        std::fs::write(&path, conf).unwrap();
    }

    /// A streaming replica of `primary` (running): `pg_basebackup -R` into a folder of its
    /// own, on a port of its own; not started.
    pub fn replica_of(primary: &Cluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Self {
            port: free_port(),
            bin: primary.bin.clone(),
            as_postgres: primary.as_postgres,
            dir,
            detached: false,
        };
        if cluster.as_postgres {
            cluster.give_to_postgres(cluster.dir.path());
        }
        let data = cluster.data();
        let port = primary.port.to_string();
        cluster.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        cluster.append_conf("hot_standby = on");
        cluster
    }

    /// Promotes a replica to a primary of its own (it stops following).
    pub fn promote(&self) {
        self.run(
            "pg_ctl",
            &["-D", self.data().to_str().unwrap(), "-w", "promote"],
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn give_to_postgres(&self, path: &Path) {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres", path.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown to postgres");
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn start(&self) {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops at once, rolling back what is in flight (as a crash or failover would).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Replaces pg_hba.conf (who may connect, how).
    pub fn write_hba(&self, hba: &str) {
        let path = self.data().join("pg_hba.conf");
        std::fs::write(&path, hba).unwrap();
        if self.as_postgres {
            self.give_to_postgres(&path);
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }

    /// A path the cluster's files can be read from by the test (a CA certificate, say).
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Cluster {
    /// Gives up ownership: the cluster keeps running and its folder stays. Returns the folder
    /// and the shell command that stops the cluster, for whoever removes it later.
    pub fn detach(mut self) -> (PathBuf, String) {
        let stop = format!(
            "{}'{}' -D '{}' -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.data().display()
        );
        self.detached = true;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir.keep(), stop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let data = self.data();
        let stop = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(stop)
                .output()
        } else {
            Command::new(self.bin.join("pg_ctl")).args(stop).output()
        };
    }
}
