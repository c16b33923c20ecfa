//! What a `sendmmsg` caller needs once: headers whose stored addresses are initialised.
//! Counting what `sendmmsg` sent means iterating its result, which reads those
//! addresses, and only `recvmmsg` ever writes them (`MultiHeaders::preallocate` leaves
//! them uninitialised). So one `recvmmsg` of `n` datagrams on a loopback socket
//! initialises them all first. Shared by the relay's threads, its load tool and the
//! PBX's SIP sockets.

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// `n` headers ready for `sendmmsg`, or `None` when loopback is unavailable.
pub fn send_headers(n: usize) -> Option<MultiHeaders<SockaddrStorage>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    let me = socket.local_addr().ok()?;
    for _ in 0..n {
        socket.send_to(&[0], me).ok()?;
    }
    let mut headers = MultiHeaders::preallocate(n, None);
    let mut bufs = vec![[0u8; 1]; n];
    let mut slices: Vec<[IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    // Loopback delivers before `send_to` returns, so all are queued.
    let got = recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .ok()?
    .count();
    (got == n).then_some(headers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_for_any_batch_size() {
        for n in [1, 32, 64] {
            assert!(super::send_headers(n).is_some(), "{n}");
        }
    }
}
