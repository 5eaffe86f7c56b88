//! The forwarder (feature `mqtt`): a thread that drains an outbox stream ([`crate::outbox`]) to
//! an MQTT broker, beside the application's writers in the same process.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use minivault::forward::{ForwardOptions, Forwarder};
//! use minivault::outbox::Outbox;
//!
//! let outbox = Outbox::open("gateway-data", minivault::Options::default())?;
//! // A thread beside the application's writers, over the same handle (clone the Outbox).
//! let forwarder = Forwarder::spawn(
//!     outbox.clone(),
//!     ForwardOptions::new("telemetry", "broker.local", 1883, "site/7/telemetry"),
//! )?;
//! let seq = outbox.append(b"telemetry", br#"{"temp":21.5}"#)?;   // durable on return
//! outbox.db().put(b"config/interval", b"10")?; // the application's own keys
//! let progress = forwarder.stop()?;                             // cursor stored, connection closed
//! # let _ = (seq, progress);
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! One connection at a time (MQTT 5, clean start, through `rumqttc`): it reads the records
//! after its consumer's cursor, publishes each as one message to the topic, its payload the
//! record's bytes and its seq in the user property `seq` (decimal; the stream's name is in
//! `stream`), keeps up to [`ForwardOptions::window`] messages in flight, and acknowledges the
//! records in the outbox ([`crate::outbox::Outbox::ack`]) once the broker's `PUBACK`s cover them
//! in order (QoS 1; with QoS 0, once written to the socket). When the connection fails — refused,
//! dropped, a `PUBACK` with an error reason, anything unexpected — it drops the connection,
//! waits (100 ms, doubling to 5 s; reset by a successful connect) and starts a new one from the
//! cursor, so the records whose `PUBACK` did not arrive are sent again.
//!
//! It syncs the database before it publishes, in every durability mode, so no record a
//! receiver has seen can be taken back by a power cut (and its seq handed out again): in a
//! relaxed mode because the record may not be synced yet, and with `Always` because an append
//! whose sync failed is readable (the database is then poisoned and the sync says so).
//!
//! # Delivery
//!
//! At least once, in seq order per stream: every record reaches the broker (up to its
//! `PUBACK`) before the cursor passes it. A record is sent twice only when the forwarder did not
//! store its acknowledgement: after a crash of the forwarder's process, a power cut (in a
//! relaxed mode, back to the last sync), or a lost connection (the messages in flight then).
//! Receivers drop duplicates by `seq`. What the broker does after its `PUBACK` (persistence,
//! delivery to subscribers) is the broker's: see `docs/DEPLOYMENT.md`.

mod window;

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;

use crate::outbox::{Outbox, Record};
use crate::Error;
use window::Window;

/// [`Progress::last_error`] while the database refuses to store the cursor.
const FULL: &str = "the database is full (its max_bytes, or the disk): the cursor cannot be stored; \
                    records are still sent, and sent again after a restart";

/// The events of one connection's MQTT event loop.
type Events = tokio::sync::mpsc::UnboundedReceiver<Result<Event, rumqttc::v5::ConnectionError>>;

/// The quality of service of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0: a record counts as delivered once written to the socket. A broker that goes away
    /// loses what it had not yet received.
    AtMostOnce,
    /// QoS 1 (the default): a record counts as delivered on the broker's `PUBACK`.
    AtLeastOnce,
}

/// What to forward, where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOptions {
    /// The stream to drain.
    pub stream: Vec<u8>,
    /// The consumer whose cursor the forwarder moves. Default `mqtt`.
    pub consumer: Vec<u8>,
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// The topic every record is published to.
    pub topic: String,
    /// Default [`Qos::AtLeastOnce`].
    pub qos: Qos,
    /// The MQTT client id. Default `minivault-<pid>-<stream>`: two clients with one id take
    /// each other's connection.
    pub client_id: String,
    /// Optional user name and password.
    pub credentials: Option<(String, String)>,
    /// Messages handed to the MQTT client and not yet acknowledged, at most. Default 256;
    /// 1 ..= 65,535. How many of them are on the wire at once is the broker's *receive maximum*
    /// (Mosquitto's `max_inflight_messages`, 20 by default); the rest wait in the client, so
    /// that a `PUBACK` is answered by the next message at once.
    pub window: usize,
    /// Bytes of those messages at most (at least one message). Default 4 MiB.
    pub window_bytes: usize,
    /// The first wait after a failed connection; it doubles up to `max_backoff`. Default 100 ms.
    pub min_backoff: Duration,
    /// The longest wait between connection attempts. Default 5 s.
    pub max_backoff: Duration,
    /// How often the forwarder looks for new records when it has nothing to send. Default 20 ms.
    pub idle_poll: Duration,
    /// MQTT keep-alive; at least 5 s. Default 30 s.
    pub keep_alive: Duration,
    /// How long to wait for a connection (TCP and `CONNACK`); at least 1 s. Default 5 s.
    pub connect_timeout: Duration,
    /// On [`Forwarder::stop`], how long to wait for the `PUBACK`s of messages in flight.
    /// Default 2 s.
    pub stop_grace: Duration,
    /// A connection with messages in flight and no `PUBACK` for this long is dropped and a new
    /// one sends them again. Default 10 s.
    pub ack_timeout: Duration,
}

impl ForwardOptions {
    /// Forward `stream` to `topic` on the broker at `host`:`port`, with the defaults.
    pub fn new(
        stream: impl AsRef<[u8]>,
        host: impl Into<String>,
        port: u16,
        topic: impl Into<String>,
    ) -> Self {
        let stream = stream.as_ref().to_vec();
        ForwardOptions {
            client_id: format!("minivault-{}-{}", std::process::id(), String::from_utf8_lossy(&stream)),
            stream,
            consumer: b"mqtt".to_vec(),
            host: host.into(),
            port,
            topic: topic.into(),
            qos: Qos::AtLeastOnce,
            credentials: None,
            window: 256,
            window_bytes: 4 << 20,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            idle_poll: Duration::from_millis(20),
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(10),
        }
    }

    /// Checks what the MQTT client would refuse (or panic on) before anything starts.
    fn validate(&self) -> Result<(), ForwardError> {
        let bad = |why: String| Err(ForwardError::InvalidOption(why));
        if let Err(why) = check_topic(&self.topic) {
            return bad(why);
        }
        if self.client_id.is_empty() || self.client_id.len() > 65_535 {
            return bad(String::from("the client id must hold 1 ..= 65,535 bytes"));
        }
        if !(1..=65_535).contains(&self.window) {
            return bad(format!("window {} is out of range: 1 ..= 65535", self.window));
        }
        if self.window_bytes == 0 {
            return bad(String::from("window_bytes must be at least 1"));
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive.as_secs() > u64::from(u16::MAX) {
            return bad(String::from("keep-alive must be 5 ..= 65535 s"));
        }
        if self.connect_timeout < Duration::from_secs(1) {
            return bad(String::from("the connect timeout must be at least 1 s"));
        }
        if self.host.is_empty() {
            return bad(String::from("no broker host"));
        }
        if self.min_backoff.is_zero() || self.max_backoff < self.min_backoff {
            return bad(String::from("backoff: 0 < min <= max"));
        }
        Ok(())
    }
}

/// Checks an MQTT topic name for publishing: 1 ..= 65,535 bytes, no wildcard (`+`, `#`), no
/// NUL.
///
/// # Errors
///
/// Why the topic is refused.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err(String::from("the topic is empty"));
    }
    if topic.len() > 65_535 {
        return Err(String::from("the topic is longer than 65,535 bytes"));
    }
    if topic.contains(['+', '#']) {
        return Err(format!("topic {topic:?} holds a wildcard (+ or #): a topic to publish to cannot"));
    }
    if topic.contains('\0') {
        return Err(String::from("the topic holds a NUL character"));
    }
    Ok(())
}

/// Why the forwarder could not start or stopped on its own.
#[derive(Debug)]
#[non_exhaustive]
pub enum ForwardError {
    /// A [`ForwardOptions`] value the forwarder cannot use.
    InvalidOption(String),
    /// The database failed (I/O, corruption, poisoned): the forwarder stops, since it can no
    /// longer read records or store its cursor.
    Db(Error),
    /// The forwarder's runtime or thread could not be created.
    Runtime(io::Error),
    /// The forwarder's thread panicked (a bug).
    Panicked,
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::InvalidOption(why) => f.write_str(why),
            ForwardError::Db(e) => write!(f, "database: {e}"),
            ForwardError::Runtime(e) => write!(f, "cannot start the forwarder: {e}"),
            ForwardError::Panicked => f.write_str("the forwarder thread panicked"),
        }
    }
}

impl std::error::Error for ForwardError {}

impl From<Error> for ForwardError {
    fn from(e: Error) -> Self {
        ForwardError::Db(e)
    }
}

/// Where a forwarder is: [`Forwarder::progress`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The cursor when the forwarder started.
    pub started_after: u64,
    /// The consumer's cursor as last stored: every record up to it is acknowledged.
    pub cursor: u64,
    /// The newest seq of the stream the forwarder has seen.
    pub newest: u64,
    /// Messages the broker acknowledged (QoS 0: written) since the start; one sent again after
    /// a lost connection counts again.
    pub forwarded: u64,
    /// Records missing from the stream when their turn came (evicted by a space cap before
    /// they were sent), passed over since the start.
    pub skipped: u64,
    /// True while a connection is up (after its `CONNACK`).
    pub connected: bool,
    /// Connections that ended, since the start.
    pub disconnects: u64,
    /// Why the last connection ended or failed, if one did.
    pub last_error: Option<String>,
}

impl Progress {
    /// Seqs after the cursor: how far the forwarder is behind the newest record it has seen.
    pub fn lag(&self) -> u64 {
        self.newest.saturating_sub(self.cursor)
    }
}

/// A running forwarder: a thread draining one stream to one broker.
#[derive(Debug)]
pub struct Forwarder {
    thread: Option<JoinHandle<Result<(), ForwardError>>>,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    outbox: Outbox,
    stream: Vec<u8>,
}

impl Forwarder {
    /// Starts a forwarder thread over `outbox` (a clone of the application's).
    ///
    /// # Errors
    ///
    /// [`ForwardError::InvalidOption`] for options it cannot use; [`ForwardError::Db`] when
    /// the stream's cursor cannot be read; [`ForwardError::Runtime`] when the thread or its
    /// runtime cannot be created.
    pub fn spawn(outbox: Outbox, options: ForwardOptions) -> Result<Forwarder, ForwardError> {
        options.validate()?;
        let cursor = outbox.cursor(&options.stream, &options.consumer)?;
        let newest = outbox.newest(&options.stream)?;
        let progress =
            Arc::new(Mutex::new(Progress { started_after: cursor, cursor, newest, ..Progress::default() }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ForwardError::Runtime)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stream = options.stream.clone();
        let run =
            Run { outbox: outbox.clone(), options, runtime, stop: stop.clone(), progress: progress.clone() };
        let thread = thread::Builder::new()
            .name(String::from("minivault-forward"))
            .spawn(move || run.run(cursor))
            .map_err(ForwardError::Runtime)?;
        Ok(Forwarder { thread: Some(thread), stop, progress, outbox, stream })
    }

    /// Where the forwarder is now. Its `newest` is the stream's newest seq now (read from the
    /// outbox, so it includes records appended while the broker is away).
    pub fn progress(&self) -> Progress {
        let mut p = self.progress.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Ok(newest) = self.outbox.newest(&self.stream) {
            p.newest = p.newest.max(newest);
        }
        p
    }

    /// True when the stored cursor has reached the stream's newest record.
    ///
    /// # Errors
    ///
    /// The database's read errors.
    pub fn drained(&self) -> Result<bool, Error> {
        let newest = self.outbox.newest(&self.stream)?;
        let cursor = self.progress.lock().unwrap_or_else(PoisonError::into_inner).cursor;
        Ok(cursor >= newest)
    }

    /// True when the thread has ended (a database error; see [`Forwarder::stop`]).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the forwarder: no new message is sent, the `PUBACK`s of those in flight are
    /// awaited for up to [`ForwardOptions::stop_grace`], the cursor is stored, and the
    /// connection is closed. Returns the final progress.
    ///
    /// # Errors
    ///
    /// What ended the thread early ([`ForwardError::Db`]), or [`ForwardError::Panicked`].
    pub fn stop(mut self) -> Result<Progress, ForwardError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()?;
        Ok(self.progress())
    }

    fn join(&mut self) -> Result<(), ForwardError> {
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ForwardError::Panicked),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join();
    }
}

/// How a connection ended.
enum End {
    /// Asked to stop; the cursor is stored.
    Stopped,
    /// The broker or the connection failed: try again after a wait.
    Broker(String),
}

/// The forwarder thread's state.
struct Run {
    outbox: Outbox,
    options: ForwardOptions,
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
}

impl Run {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Connections, one after another, with waits between failures, until asked to stop or
    /// the database fails.
    fn run(self, mut cursor: u64) -> Result<(), ForwardError> {
        let mut backoff = self.options.min_backoff;
        loop {
            if self.stopping() {
                return Ok(());
            }
            let mut connected = false;
            // rumqttc is someone else's code: should it panic on what a broker sends, this
            // connection ends like any other failure, and a new one starts.
            let outcome = catch_unwind(AssertUnwindSafe(|| self.connection(&mut cursor, &mut connected)))
                .unwrap_or_else(|_| Ok(End::Broker(String::from("the MQTT client panicked"))));
            match outcome? {
                End::Stopped => return Ok(()),
                End::Broker(why) => {
                    self.update(|p| {
                        p.connected = false;
                        p.disconnects += 1;
                        p.last_error = Some(why);
                    });
                    if connected {
                        backoff = self.options.min_backoff;
                    }
                    self.wait(backoff);
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    /// Sleeps `d`, or less when asked to stop.
    fn wait(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    fn mqtt_options(&self) -> MqttOptions {
        let o = &self.options;
        let mut m = MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
        m.set_keep_alive(o.keep_alive)
            .set_clean_start(true)
            .set_connection_timeout(o.connect_timeout.as_secs().max(1))
            .set_request_channel_capacity(o.window + 16)
            .set_outgoing_inflight_upper_limit(u16::try_from(o.window).unwrap_or(u16::MAX));
        if let Some((user, password)) = &o.credentials {
            m.set_credentials(user.clone(), password.clone());
        }
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(o.connect_timeout.as_secs().max(1));
        m.set_network_options(net);
        m
    }

    /// One connection: publish from the cursor on, store acknowledgements, until it fails or
    /// the forwarder is asked to stop. `cursor` is the stored cursor, kept up to date.
    ///
    /// rumqttc's event loop runs as a task on the forwarder's runtime and hands its events over
    /// a channel: waiting for an event with a timeout never cancels the event loop in the
    /// middle of a write (which could drop a message the client has already counted as sent).
    /// The task runs while this thread waits in the runtime, and pauses while it reads the
    /// database.
    fn connection(&self, cursor: &mut u64, connected: &mut bool) -> Result<End, ForwardError> {
        let (client, mut event_loop) = AsyncClient::new(self.mqtt_options(), self.options.window + 16);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = self.runtime.spawn(async move {
            loop {
                let event = event_loop.poll().await;
                let failed = event.is_err();
                // A failed connection ends the task: the next one starts afresh.
                if tx.send(event).is_err() || failed {
                    return;
                }
            }
        });
        let end = self.publish(&client, &mut rx, cursor, connected);
        task.abort();
        end
    }

    /// The body of [`Run::connection`].
    fn publish(
        &self,
        client: &AsyncClient,
        rx: &mut Events,
        cursor: &mut u64,
        connected: &mut bool,
    ) -> Result<End, ForwardError> {
        let o = &self.options;
        let mut window = Window::new(*cursor);
        let mut next = cursor.saturating_add(1);
        let mut last_store = Instant::now();
        let mut last_ack = Instant::now();
        let mut stop_deadline = None;
        loop {
            if stop_deadline.is_none() && self.stopping() {
                stop_deadline = Some(Instant::now() + o.stop_grace);
            }
            // Hand over more records once an eighth of the window is free.
            let mut idle = false;
            let room = o.window.saturating_sub(window.outstanding());
            let room_bytes = o.window_bytes.saturating_sub(window.outstanding_bytes());
            let worth_it = room >= (o.window / 8).max(1) && (room_bytes > 0 || window.outstanding() == 0);
            if *connected && stop_deadline.is_none() && worth_it {
                let records = self.outbox.read_bounded(&o.stream, next, room, room_bytes.max(1))?;
                idle = records.is_empty();
                // In every mode: what a read returns is in the MemTable, but with the shared
                // handle an append is inserted before its sync, so in Always mode too it may be
                // one whose sync failed (and is gone after a restart). Syncing first publishes
                // only durable records; when they already are, it returns at once (or Poisoned).
                if !idle {
                    self.outbox.sync()?;
                }
                if window.outstanding() == 0 {
                    last_ack = Instant::now();
                }
                for Record { seq, value } in records {
                    let skipped = seq.saturating_sub(next);
                    let len = value.len();
                    if let Err(e) = client.try_publish_with_properties(
                        o.topic.clone(),
                        qos(o.qos),
                        false,
                        value,
                        properties(&o.stream, seq),
                    ) {
                        return Ok(End::Broker(format!("the MQTT client refused a message: {e}")));
                    }
                    window.handed_over(seq, len);
                    next = seq.saturating_add(1);
                    self.update(|p| {
                        p.skipped += skipped;
                        p.newest = p.newest.max(seq);
                    });
                }
            }
            let waiting = window.outstanding() > 0;
            if let Some(deadline) = stop_deadline {
                if !waiting || Instant::now() >= deadline {
                    self.store(&mut window, cursor)?;
                    if *connected {
                        let _ = client.try_disconnect();
                        // Lets the event loop write the DISCONNECT.
                        let _ = self.runtime.block_on(async {
                            tokio::time::timeout(Duration::from_millis(50), rx.recv()).await
                        });
                    }
                    return Ok(End::Stopped);
                }
            }
            if waiting && last_ack.elapsed() >= o.ack_timeout {
                self.store(&mut window, cursor)?;
                return Ok(End::Broker(format!("no PUBACK for {:?}", o.ack_timeout)));
            }
            let timeout =
                if waiting || !*connected || !idle { Duration::from_millis(100) } else { o.idle_poll };
            let first = self.runtime.block_on(async { tokio::time::timeout(timeout, rx.recv()).await });
            let mut event = match first {
                Err(_elapsed) => None,
                Ok(None) => Some(Err(String::from("the MQTT event loop ended"))),
                Ok(Some(event)) => Some(event.map_err(|e| format!("broker {}:{}: {e}", o.host, o.port))),
            };
            while let Some(result) = event.take() {
                let handled =
                    result.and_then(|event| self.handle(event, &mut window, connected, &mut last_ack));
                if let Err(why) = handled {
                    self.store(&mut window, cursor)?;
                    return Ok(End::Broker(why));
                }
                // Everything else that has arrived, without waiting.
                event =
                    rx.try_recv().ok().map(|e| e.map_err(|e| format!("broker {}:{}: {e}", o.host, o.port)));
            }
            // Store the acknowledged point when nothing else is out, or every 20 ms.
            if window.advance() > *cursor
                && (window.outstanding() == 0 || last_store.elapsed() >= Duration::from_millis(20))
            {
                self.store(&mut window, cursor)?;
                last_store = Instant::now();
            }
        }
    }

    fn handle(
        &self,
        event: Event,
        window: &mut Window,
        connected: &mut bool,
        last_ack: &mut Instant,
    ) -> Result<(), String> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                *connected = true;
                self.update(|p| p.connected = true);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                window.written(pkid).map_err(|a| a.to_string())?;
                if pkid == 0 {
                    self.update(|p| p.forwarded += 1);
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                return Err(format!(
                    "the broker acknowledged out of order (packet id {pkid} still in flight)"
                ))
            }
            Event::Incoming(Packet::PubAck(ack)) => match ack.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                    window.acknowledged(ack.pkid).map_err(|a| a.to_string())?;
                    *last_ack = Instant::now();
                    self.update(|p| p.forwarded += 1);
                }
                reason => return Err(format!("the broker refused a message: {reason:?}")),
            },
            Event::Incoming(Packet::Disconnect(d)) => {
                return Err(format!("the broker disconnected: {:?}", d.reason_code));
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores the acknowledged point as the consumer's cursor, if it moved.
    fn store(&self, window: &mut Window, cursor: &mut u64) -> Result<(), ForwardError> {
        let acked = window.advance();
        if acked > *cursor {
            let stored = match self.outbox.ack(&self.options.stream, &self.options.consumer, acked) {
                Ok(stored) => stored,
                // At a size cap with `WhenFull::RefuseWrites` (or a full disk) the cursor cannot
                // be stored: go on sending (what was sent goes again after a restart) and try
                // again at the next acknowledgement.
                Err(Error::Engine(minivault_core::Error::Full)) => {
                    self.update(|p| p.last_error = Some(String::from(FULL)));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let newest = self.outbox.newest(&self.options.stream)?;
            *cursor = stored;
            self.update(|p| {
                p.cursor = stored;
                p.newest = newest;
                if p.last_error.as_deref() == Some(FULL) {
                    p.last_error = None;
                }
            });
        }
        Ok(())
    }
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// The message's user properties: `seq` (decimal) and `stream`.
fn properties(stream: &[u8], seq: u64) -> PublishProperties {
    PublishProperties {
        user_properties: vec![
            (String::from("seq"), seq.to_string()),
            (String::from("stream"), String::from_utf8_lossy(stream).into_owned()),
        ],
        ..PublishProperties::default()
    }
}
