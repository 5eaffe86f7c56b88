//! [`Window`]: the records one connection has handed to the MQTT client and not yet seen
//! acknowledged, and how far the broker has acknowledged every record in order.
//!
//! A record goes through three places: *queued* (handed to the client, waiting for the packet
//! id the client gives it as it writes the `PUBLISH`; the client reports ids in the order the
//! records were handed over), *in flight* (packet id → seq, waiting for the `PUBACK`), and
//! *done*. [`Window::advance`] moves the acknowledged point over every done record at the front,
//! in seq order, so a `PUBACK` that arrives out of order waits for the ones before it. With
//! QoS 0 a record is done once written (packet id 0). One `Window` lives as long as one
//! connection: a new connection starts a new one from the stored cursor.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// What the client reported that does not fit what was sent: the connection is dropped and
/// the records are sent again on a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A packet id was reported with no record waiting for one.
    UnexpectedPublish(u16),
    /// A packet id reported while a record was still in flight under it.
    PacketIdInUse(u16),
    /// A `PUBACK` for a packet id with no record in flight.
    UnexpectedAck(u16),
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::UnexpectedPublish(id) => write!(f, "the client sent packet {id} with no record queued"),
            Anomaly::PacketIdInUse(id) => write!(f, "packet id {id} reused while in flight"),
            Anomaly::UnexpectedAck(id) => write!(f, "PUBACK for packet id {id}, which is not in flight"),
        }
    }
}

/// The records of one connection between the cursor and what was handed to the client.
#[derive(Debug)]
pub struct Window {
    /// Every record handed to the client and not yet passed by `acked`, in seq order, with its
    /// length.
    order: VecDeque<(u64, usize)>,
    /// The lengths in `order`, summed.
    bytes: usize,
    /// Handed to the client, waiting for its packet id (in order).
    queued: VecDeque<u64>,
    /// Packet id → seq: written, waiting for the `PUBACK`.
    in_flight: HashMap<u16, u64>,
    /// Acknowledged (or written, QoS 0) but behind an earlier record still out.
    done: BTreeSet<u64>,
    /// Every record up to here is acknowledged; records missing from the stream in between
    /// (evicted) are passed over.
    acked: u64,
}

impl Window {
    /// An empty window over a stream whose records up to `acked` are done.
    pub fn new(acked: u64) -> Window {
        Window {
            order: VecDeque::new(),
            bytes: 0,
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
            done: BTreeSet::new(),
            acked,
        }
    }

    /// Record `seq` (above every record handed over before), of `len` bytes, was handed to the
    /// client.
    pub fn handed_over(&mut self, seq: u64, len: usize) {
        self.order.push_back((seq, len));
        self.bytes += len;
        self.queued.push_back(seq);
    }

    /// The client wrote the next queued record's `PUBLISH` under packet id `pkid` (0: QoS 0,
    /// done once written).
    pub fn written(&mut self, pkid: u16) -> Result<(), Anomaly> {
        let seq = self.queued.pop_front().ok_or(Anomaly::UnexpectedPublish(pkid))?;
        if pkid == 0 {
            self.done.insert(seq);
        } else if self.in_flight.insert(pkid, seq).is_some() {
            return Err(Anomaly::PacketIdInUse(pkid));
        }
        Ok(())
    }

    /// The broker acknowledged packet id `pkid`.
    pub fn acknowledged(&mut self, pkid: u16) -> Result<u64, Anomaly> {
        let seq = self.in_flight.remove(&pkid).ok_or(Anomaly::UnexpectedAck(pkid))?;
        self.done.insert(seq);
        Ok(seq)
    }

    /// Moves the acknowledged point over the done records at the front; returns it.
    pub fn advance(&mut self) -> u64 {
        while let Some(&(front, len)) = self.order.front() {
            if !self.done.remove(&front) {
                break;
            }
            self.order.pop_front();
            self.bytes -= len;
            self.acked = front;
        }
        self.acked
    }

    /// Records handed over and not yet passed by the acknowledged point.
    pub fn outstanding(&self) -> usize {
        self.order.len()
    }

    /// Their bytes.
    pub fn outstanding_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn acknowledgements_out_of_order_wait_for_the_records_before_them() {
        let mut w = Window::new(10);
        for seq in [11, 12, 15, 16] {
            w.handed_over(seq, 10); // 13 and 14 are missing from the stream
        }
        assert_eq!(w.outstanding_bytes(), 40);
        for pkid in 1..=4 {
            w.written(pkid).unwrap();
        }
        assert_eq!(w.acknowledged(2).unwrap(), 12);
        assert_eq!(w.advance(), 10, "11 is still out");
        assert_eq!(w.acknowledged(1).unwrap(), 11);
        assert_eq!(w.advance(), 12);
        w.acknowledged(3).unwrap();
        assert_eq!(w.advance(), 15, "13 and 14 are passed over");
        assert_eq!(w.outstanding(), 1);
        w.acknowledged(4).unwrap();
        assert_eq!((w.advance(), w.outstanding(), w.outstanding_bytes()), (16, 0, 0));
    }

    #[test]
    fn qos0_records_are_done_once_written() {
        let mut w = Window::new(0);
        w.handed_over(1, 1);
        w.handed_over(2, 1);
        w.written(0).unwrap();
        assert_eq!(w.advance(), 1);
        w.written(0).unwrap();
        assert_eq!(w.advance(), 2);
    }

    #[test]
    fn what_does_not_fit_is_an_anomaly() {
        let mut w = Window::new(0);
        assert_eq!(w.written(1), Err(Anomaly::UnexpectedPublish(1)));
        w.handed_over(1, 1);
        w.handed_over(2, 1);
        w.written(7).unwrap();
        assert_eq!(w.written(7), Err(Anomaly::PacketIdInUse(7)));
        assert_eq!(w.acknowledged(8), Err(Anomaly::UnexpectedAck(8)));
    }
}
