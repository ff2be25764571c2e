//! Batched UDP I/O for the generator.
//!
//! The generator shares the machine with the server it measures, so every
//! system call it makes is CPU taken from the server under test. A paced
//! burst therefore goes out in one `sendmmsg` and answers come in with one
//! `recvmmsg` (Linux, through `nix`'s safe wrappers: the workspace forbids
//! `unsafe`). Both keep their buffers and message headers across calls, so
//! a burst costs no heap allocation. Elsewhere the same types fall back to
//! one `send`/`recv` per datagram.
//!
//! Each answer also carries the time the kernel received it
//! (`SO_TIMESTAMPNS`): the generator runs at a low priority beside the
//! server, and a receiver thread that waits for a CPU must not count its
//! own wait as the server's latency.
//!
//! The UDP sockets are connected to the target: the messages then need no
//! destination address (`nix`'s multi-message results are only sound to
//! read with the address-less `()` form), and the kernel filters out
//! datagrams from anyone else.

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

/// Most datagrams per `sendmmsg`: large enough that a 1 ms burst at
/// 75,000/s per socket takes two calls, small enough to stay in L1/L2.
pub(crate) const SEND_BATCH: usize = 64;
/// Most datagrams per `recvmmsg`.
pub(crate) const RECV_BATCH: usize = 64;
/// One receive buffer: a 200 OK listing many contacts or a 401 fits; a
/// longer datagram is cut and its top (status line, Via) still parses.
const RECV_BUF: usize = 16 * 1024;
/// Initial capacity of one request buffer (a REGISTER is ~450 bytes, with
/// digest credentials ~750); it grows once if ever needed, then is reused.
const REQ_BUF: usize = 1024;

/// Requests built for one system call. The buffers are reused from burst to
/// burst: building a request only overwrites bytes.
pub(crate) struct Outbox {
    bufs: Vec<Vec<u8>>,
    len: usize,
    #[cfg(target_os = "linux")]
    sys: linux::SendState,
    /// System calls made (to report the average batch size).
    pub(crate) calls: u64,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            bufs: (0..SEND_BATCH)
                .map(|_| Vec::with_capacity(REQ_BUF))
                .collect(),
            len: 0,
            #[cfg(target_os = "linux")]
            sys: linux::SendState::new(),
            calls: 0,
        }
    }

    /// The next free buffer, cleared; the caller must `flush` first when
    /// `is_full`.
    pub(crate) fn next(&mut self) -> &mut Vec<u8> {
        let buf = &mut self.bufs[self.len];
        buf.clear();
        self.len += 1;
        buf
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == SEND_BATCH
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The requests waiting to be sent.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.len].iter().map(Vec::as_slice)
    }

    /// Send everything waiting over the connected UDP socket `sock`;
    /// empties the outbox even on error.
    pub(crate) fn flush_udp(&mut self, sock: &UdpSocket) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let n = std::mem::take(&mut self.len);
        #[cfg(target_os = "linux")]
        {
            self.calls += self.sys.send_all(sock, &self.bufs[..n])?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            for b in &self.bufs[..n] {
                sock.send(b)?;
                self.calls += 1;
            }
        }
        Ok(())
    }

    /// Forget what is waiting (after the caller sent it some other way).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

/// Receive buffers for one batch of answers, reused for the whole run.
pub(crate) struct Inbox {
    bufs: Vec<Vec<u8>>,
    lens: [usize; RECV_BATCH],
    /// When the kernel received each datagram (since the Unix epoch, the
    /// realtime clock), if the socket asked for it ([`stamp_arrivals`]).
    arrived: [Option<Duration>; RECV_BATCH],
    #[cfg(target_os = "linux")]
    sys: linux::RecvState,
    /// System calls that returned datagrams (to report the average batch size).
    pub(crate) calls: u64,
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Self {
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            lens: [0; RECV_BATCH],
            arrived: [None; RECV_BATCH],
            #[cfg(target_os = "linux")]
            sys: linux::RecvState::new(),
            calls: 0,
        }
    }

    /// Wait for at least one datagram (up to the socket's read timeout),
    /// then take whatever else is already queued, up to `RECV_BATCH`.
    /// Returns how many datagrams `get` now holds.
    pub(crate) fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        let n = self
            .sys
            .recv(sock, &mut self.bufs, &mut self.lens, &mut self.arrived)?;
        #[cfg(not(target_os = "linux"))]
        let n = {
            self.lens[0] = sock.recv(&mut self.bufs[0])?;
            self.arrived[0] = None;
            1
        };
        self.calls += 1;
        Ok(n)
    }

    /// Datagram `i` of the last `recv`.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(RECV_BUF)]
    }

    /// When the kernel received datagram `i` of the last `recv` (realtime
    /// clock, since the Unix epoch), if it said.
    pub(crate) fn arrived(&self, i: usize) -> Option<Duration> {
        self.arrived[i]
    }
}

/// Ask the kernel to stamp every datagram `sock` receives with the time it
/// arrived (`SO_TIMESTAMPNS`, read back by [`Inbox::arrived`]).
pub(crate) fn stamp_arrivals(sock: &UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "receive timestamps need Linux",
        ))
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{RECV_BATCH, SEND_BATCH};
    use nix::errno::Errno;
    use nix::sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, recvmmsg, sendmmsg,
    };
    use nix::sys::time::TimeSpec;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd as _;
    use std::time::Duration;

    /// No per-message address: the socket is connected.
    const NO_ADDRS: [Option<()>; SEND_BATCH] = [None; SEND_BATCH];

    /// `sendmmsg`'s message headers, allocated once.
    pub(super) struct SendState {
        headers: MultiHeaders<()>,
    }

    impl SendState {
        pub(super) fn new() -> Self {
            Self {
                headers: MultiHeaders::preallocate(SEND_BATCH, None),
            }
        }

        /// Send every buffer; returns the number of system calls it took
        /// (a blocking socket may accept only part of a batch when its send
        /// buffer is full, the rest goes in the next call).
        pub(super) fn send_all(&mut self, sock: &UdpSocket, bufs: &[Vec<u8>]) -> io::Result<u64> {
            let fd = sock.as_raw_fd();
            let mut done = 0;
            let mut calls = 0;
            while done < bufs.len() {
                let iov: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|i| {
                    [IoSlice::new(
                        bufs.get(done + i).map_or(&[][..], Vec::as_slice),
                    )]
                });
                let todo = bufs.len() - done;
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                let sent = match sendmmsg(
                    fd,
                    &mut self.headers,
                    &iov[..todo],
                    &NO_ADDRS[..todo],
                    no_cmsgs,
                    MsgFlags::empty(),
                ) {
                    Ok(r) => r.count(),
                    // ECONNREFUSED reports an earlier ICMP port unreachable
                    // (nothing listens yet, or any more); the error is
                    // consumed, so try again: unanswered requests time out
                    // as they would unconnected.
                    Err(Errno::EINTR | Errno::ECONNREFUSED) => 0,
                    Err(e) => return Err(e.into()),
                };
                calls += 1;
                if sent == 0 && calls > 2 * SEND_BATCH as u64 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "sendmmsg keeps sending nothing",
                    ));
                }
                done += sent;
            }
            Ok(calls)
        }
    }

    /// `recvmmsg`'s message headers, allocated once, each with room for
    /// one control message: the receive timestamp. (The kernel sets each
    /// header's control length to what it wrote and nix does not reset it;
    /// a timestamp fills the room exactly, so the room stays the same.)
    pub(super) struct RecvState {
        headers: MultiHeaders<()>,
    }

    impl RecvState {
        pub(super) fn new() -> Self {
            Self {
                headers: MultiHeaders::preallocate(RECV_BATCH, Some(nix::cmsg_space!(TimeSpec))),
            }
        }

        pub(super) fn recv(
            &mut self,
            sock: &UdpSocket,
            bufs: &mut [Vec<u8>],
            lens: &mut [usize; RECV_BATCH],
            arrived: &mut [Option<Duration>; RECV_BATCH],
        ) -> io::Result<usize> {
            let mut it = bufs.iter_mut();
            let mut iov: [[IoSliceMut<'_>; 1]; RECV_BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    it.next().map_or(&mut [][..], Vec::as_mut_slice),
                )]
            });
            // MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first
            // datagram only, then return with what is queued.
            let got = recvmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                iov.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(io::Error::from)?;
            let mut n = 0;
            for ((len, at), msg) in lens.iter_mut().zip(arrived.iter_mut()).zip(got) {
                *len = msg.bytes;
                *at = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::from(ts)),
                        _ => None,
                    })
                });
                n += 1;
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More datagrams than one batch, each distinct, both ways through the
    /// batched calls on a connected loopback pair.
    #[test]
    fn outbox_and_inbox_carry_every_datagram_intact() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        b.connect(a.local_addr().expect("addr")).expect("connect");
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let total = SEND_BATCH * 2 + 7;
        let mut outbox = Outbox::new();
        for i in 0..total {
            if outbox.is_full() {
                outbox.flush_udp(&a).expect("send");
            }
            let buf = outbox.next();
            buf.extend_from_slice(format!("datagram {i} ").as_bytes());
            buf.resize(buf.len() + i, b'x');
        }
        outbox.flush_udp(&a).expect("send");
        assert!(outbox.is_empty());
        assert!(outbox.calls >= 3, "{}", outbox.calls);
        let mut inbox = Inbox::new();
        let mut seen = 0;
        while seen < total {
            let n = inbox.recv(&b).expect("recv");
            assert!((1..=RECV_BATCH).contains(&n));
            for i in 0..n {
                let want = format!("datagram {seen} ");
                let got = inbox.get(i);
                assert!(got.starts_with(want.as_bytes()), "{seen}");
                assert_eq!(got.len(), want.len() + seen);
                seen += 1;
            }
        }
    }
}
