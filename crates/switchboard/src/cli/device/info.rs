//! What the device tells the server about itself: primary IPv4, LAN address, MAC of
//! the primary interface, hostname. Every item is best effort (`None` when unknown):
//! the server falls back to the connection's address, and a box without a default
//! route must still be able to enrol.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceInfo {
    pub ip_address: Option<String>,
    pub ip_lan: Option<String>,
    pub mac: Option<String>,
    pub hostname: Option<String>,
}

/// Any public address: only the routing decision matters, nothing is sent to it.
const ROUTE_PROBE: (Ipv4Addr, u16) = (Ipv4Addr::new(1, 1, 1, 1), 53);

pub fn collect() -> DeviceInfo {
    let primary = primary_ipv4();
    let addrs = interface_ipv4s();
    DeviceInfo {
        ip_address: primary.map(|ip| ip.to_string()),
        ip_lan: lan_address(primary, &addrs).map(|ip| ip.to_string()),
        mac: primary
            .and_then(|ip| interface_of(ip, &addrs))
            .and_then(|name| mac_of(&name)),
        hostname: hostname(),
    }
}

/// The source address the kernel picks for a UDP "connect" towards the Internet (a
/// connect on UDP only sets the default destination: no packet leaves).
fn primary_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(ROUTE_PROBE).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// (interface, IPv4 address) of every interface that is up, loopback excluded.
fn interface_ipv4s() -> Vec<(String, Ipv4Addr)> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| {
            let ip = a.address.as_ref()?.as_sockaddr_in()?.ip();
            Some((a.interface_name, ip))
        })
        .collect()
}

/// The private (RFC 1918) address: the primary one when it is private (the usual box
/// behind NAT), else the first private address of another interface.
fn lan_address(primary: Option<Ipv4Addr>, addrs: &[(String, Ipv4Addr)]) -> Option<Ipv4Addr> {
    primary
        .filter(Ipv4Addr::is_private)
        .or_else(|| addrs.iter().map(|(_, ip)| *ip).find(Ipv4Addr::is_private))
}

fn interface_of(ip: Ipv4Addr, addrs: &[(String, Ipv4Addr)]) -> Option<String> {
    addrs
        .iter()
        .find(|(_, a)| *a == ip)
        .map(|(name, _)| name.clone())
}

/// The interface's hardware address from sysfs, when it looks like an Ethernet MAC
/// (the server refuses anything else, and a tunnel's all-zero address means nothing).
fn mac_of(interface: &str) -> Option<String> {
    if interface.contains('/') || interface.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).ok()?;
    let mac = text.trim().to_ascii_lowercase();
    (is_mac(&mac) && mac != "00:00:00:00:00:00").then_some(mac)
}

/// `xx:xx:xx:xx:xx:xx` in hex.
pub fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_address_prefers_a_private_primary() {
        let addrs = vec![
            ("eth0".to_owned(), Ipv4Addr::new(203, 0, 113, 5)),
            ("eth1".to_owned(), Ipv4Addr::new(10, 0, 0, 50)),
        ];
        let private = Ipv4Addr::new(192, 168, 1, 100);
        assert_eq!(lan_address(Some(private), &addrs), Some(private));
        assert_eq!(
            lan_address(Some(Ipv4Addr::new(203, 0, 113, 5)), &addrs),
            Some(Ipv4Addr::new(10, 0, 0, 50))
        );
        assert_eq!(
            interface_of(Ipv4Addr::new(10, 0, 0, 50), &addrs).as_deref(),
            Some("eth1")
        );
    }

    #[test]
    fn mac_shape() {
        assert!(is_mac("00:1a:2b:3c:4d:5e"));
        assert!(!is_mac("00:1a:2b:3c:4d"));
        assert!(!is_mac("00-1a-2b-3c-4d-5e"));
        assert!(!is_mac("zz:1a:2b:3c:4d:5e"));
    }

    #[test]
    fn collect_does_not_fail_without_network() {
        // Whatever the machine has, collecting never panics and a MAC is well formed.
        let info = collect();
        assert!(info.mac.as_deref().is_none_or(is_mac));
    }
}
