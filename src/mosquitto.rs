//! A real Mosquitto broker for the forwarder's tests, example and benchmark: started on
//! 127.0.0.1 on a free port with a configuration of its own in a directory of its own, killed
//! (`SIGKILL`) or stopped (`SIGTERM`) and started again on the same port, and killed when
//! dropped.
//!
//! [`Subscriber`] is the receiving side: an MQTT 5 client with a persistent session that
//! records every message that arrives, its `seq` user property, its payload and when.
//!
//! The broker is Debian's `mosquitto` package (`scripts/mosquitto.sh` installs it). When it is
//! missing, [`broker_or_skip`] says so on standard error and the caller skips, unless
//! `MINIVAULT_REQUIRE_MOSQUITTO=1` is set (as `.ci/run` does after installing it), which turns a
//! missing broker into a failure.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` to make a missing broker a failure instead of a skip.
pub const REQUIRE_ENV: &str = "MINIVAULT_REQUIRE_MOSQUITTO";

/// The `mosquitto` binary: on `PATH`, or in `/usr/sbin` (where Debian puts it, not on a
/// user's `PATH`).
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file());
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/mosquitto")).filter(|p| p.is_file()))
}

/// A started broker, or `None` after saying on standard error why the calling test skips.
///
/// # Panics
///
/// When the broker is missing and [`REQUIRE_ENV`] is `1`, or when it is installed but does not
/// start.
pub fn broker_or_skip(test: &str) -> Option<Broker> {
    if binary().is_none() {
        assert!(
            std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
            "{test}: mosquitto is not installed and {REQUIRE_ENV}=1 (run scripts/mosquitto.sh)"
        );
        eprintln!(
            "SKIPPED {test}: the Mosquitto broker is not installed, so the forwarder cannot be tested \
             against it (scripts/mosquitto.sh installs it; .ci/run does, and runs these tests)"
        );
        return None;
    }
    Some(Broker::start().unwrap_or_else(|e| panic!("{test}: cannot start mosquitto: {e}")))
}

/// A Mosquitto process of our own.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker on a free port of 127.0.0.1, with persistence in its own directory
    /// (saved every second and at a clean stop), so that a persistent session survives a
    /// restart.
    ///
    /// # Errors
    ///
    /// When no `mosquitto` binary is found or it does not start listening within 10 s.
    pub fn start() -> io::Result<Broker> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "minivault-mosquitto-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir)?;
        // Started as root, mosquitto drops to its own user: it must still write its
        // persistence file and log here.
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let mut broker = Broker { port: 0, dir, child: None, starts: 0 };
        // A free port can be taken between our probe and the broker's bind: try a few.
        let mut last = io::Error::other("no attempt");
        for _ in 0..5 {
            broker.port = free_port()?;
            match broker.launch() {
                Ok(()) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its working directory: configuration, log, persistence file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    fn launch(&mut self) -> io::Result<()> {
        let bin =
            binary().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mosquitto is not installed"))?;
        let conf = self.dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 0\n\
                 log_dest file {dir}/mosquitto.log\nlog_type error\n\
                 log_type warning\nlog_type notice\nlog_type information\n",
                port = self.port,
                dir = self.dir.display()
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "mosquitto exited ({status}) on port {}: {stderr}{}",
                        self.port,
                        self.log()
                    )));
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(io::Error::other(format!(
                    "mosquitto did not listen on port {} in 10 s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with `SIGKILL` (what it had not saved is lost) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker with `SIGTERM` (it saves its persistence file) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the pid of our own child, which we have not waited for, so
                // the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (after [`Broker::kill`] or [`Broker::stop`]).
    ///
    /// # Errors
    ///
    /// When it does not start listening (the port may be briefly unavailable: retried for 10 s).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// How many times the broker was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port of 127.0.0.1 that nothing listens on right now.
///
/// # Errors
///
/// When no socket can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One message as a [`Subscriber`] received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `seq` user property (`None`: absent or not a number).
    pub seq: Option<u64>,
    /// The `stream` user property.
    pub stream: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// The topic.
    pub topic: String,
    /// The MQTT DUP flag: the broker sent it again (after a restart, from its saved session).
    pub dup: bool,
}

/// An MQTT 5 subscriber on its own thread: QoS 1, a persistent session (clean start off, the
/// session kept for an hour), so that messages published while it is disconnected (the broker
/// restarting) are queued for it. It reconnects on its own, every 50 ms, and subscribes again on
/// every connection whose session the broker no longer has.
#[derive(Debug)]
pub struct Subscriber {
    received: std::sync::Arc<std::sync::Mutex<Vec<Message>>>,
    subscribed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `topic` (a filter) on the broker at 127.0.0.1:`port` as `client_id`, and
    /// waits up to 10 s for the first `SUBACK`.
    ///
    /// # Panics
    ///
    /// When no `SUBACK` arrives in time.
    pub fn start(port: u16, client_id: &str, topic: &str) -> Subscriber {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{Client, Event, MqttOptions};
        use std::sync::atomic::{AtomicBool, AtomicU64};
        use std::sync::{Arc, Mutex};

        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(Some(8 << 20));
        let (client, mut connection) = Client::new(options, 64);
        let received = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, subscribed, stop, topic) =
                (received.clone(), subscribed.clone(), stop.clone(), topic.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match connection.recv_timeout(Duration::from_millis(50)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                            if !ack.session_present {
                                let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                            } else {
                                subscribed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            subscribed.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            let prop = |name: &str| {
                                p.properties.as_ref().and_then(|props| {
                                    props
                                        .user_properties
                                        .iter()
                                        .find(|(k, _)| k == name)
                                        .map(|(_, v)| v.clone())
                                })
                            };
                            let message = Message {
                                seq: prop("seq").and_then(|s| s.parse().ok()),
                                stream: prop("stream"),
                                payload: p.payload.to_vec(),
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                dup: p.dup,
                            };
                            received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(message);
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                let _ = client.try_disconnect();
                let _ = connection.recv_timeout(Duration::from_millis(50));
            })
        };
        let sub = Subscriber { received, subscribed, stop, thread: Some(thread) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sub.subscribed.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no SUBACK from the broker on port {port} in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        sub
    }

    /// Every message received so far, in the order they arrived.
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// How many messages arrived so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Waits up to `timeout` for `done` to hold over the messages received; returns them.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
