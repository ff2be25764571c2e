//! A trivial UDP responder: answers every request with a 200 OK that copies
//! Via, From, To, Call-ID and CSeq, doing nothing else. Driving it with
//! `regmesh bench` shows the generator's own ceiling on this machine.

use anyhow::Context as _;
use std::net::{SocketAddr, UdpSocket};

#[derive(clap::Args)]
pub(crate) struct ResponderArgs {
    /// Address to answer on (loopback).
    #[arg(long, default_value = "127.0.0.1:5099")]
    listen: SocketAddr,
    /// Receive threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub(crate) fn run(args: ResponderArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen must be a loopback address"
    );
    let sock = UdpSocket::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    eprintln!("bench-responder: listening on udp {}", sock.local_addr()?);
    let mut handles = Vec::new();
    for _ in 0..args.threads.max(1) {
        let sock = sock.try_clone()?;
        handles.push(std::thread::spawn(move || serve(&sock)));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn serve(sock: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(2048);
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        out.clear();
        out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        for line in buf[..n].split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            let copy = [&b"Via:"[..], b"From:", b"To:", b"Call-ID:", b"CSeq:"]
                .iter()
                .any(|h| line.len() >= h.len() && line[..h.len()].eq_ignore_ascii_case(h));
            if copy {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let _ = sock.send_to(&out, peer);
    }
}
