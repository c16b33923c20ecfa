//! The set of blocked addresses and ranges, checked on every SIP datagram and HTTP
//! request: one hash lookup for the address itself and one per prefix length that has
//! ranges (at most 33 for IPv4, 129 for IPv6; in practice a handful), so the check costs
//! the same whatever the number of blocks.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::time::Timestamp;

/// One block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub network: IpNet,
    pub reason: String,
    /// `auto` or `manual`.
    pub source: String,
    pub blocked_at: Timestamp,
    /// `None`: until unblocked.
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    /// Single addresses (/32, /128).
    hosts: HashMap<IpAddr, Block>,
    /// Ranges by prefix length.
    ranges: BTreeMap<u8, HashMap<IpNet, Block>>,
}

impl Blocklist {
    /// The block covering `ip`, if any (expired ones included until the timer removes
    /// them; [`Self::blocks`] at `now` tells).
    pub fn find(&self, ip: IpAddr) -> Option<&Block> {
        if let Some(b) = self.hosts.get(&ip) {
            return Some(b);
        }
        for (len, nets) in &self.ranges {
            let Ok(net) = IpNet::new(ip, *len) else {
                continue;
            };
            if let Some(b) = nets.get(&net.trunc()) {
                return Some(b);
            }
        }
        None
    }

    /// Whether `ip` is blocked at `now`.
    pub fn blocks(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.find(ip)
            .is_some_and(|b| b.expires_at.is_none_or(|t| t > now))
    }

    pub fn insert(&mut self, block: Block) {
        let net = block.network.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            self.hosts.insert(net.addr(), block);
        } else {
            self.ranges
                .entry(net.prefix_len())
                .or_default()
                .insert(net, block);
        }
    }

    pub fn remove(&mut self, network: &IpNet) -> Option<Block> {
        let net = network.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return self.hosts.remove(&net.addr());
        }
        let nets = self.ranges.get_mut(&net.prefix_len())?;
        let out = nets.remove(&net);
        if nets.is_empty() {
            self.ranges.remove(&net.prefix_len());
        }
        out
    }

    pub fn all(&self) -> impl Iterator<Item = &Block> {
        self.hosts
            .values()
            .chain(self.ranges.values().flat_map(|m| m.values()))
    }

    /// Blocks ended by `now`.
    pub fn expired(&self, now: Timestamp) -> Vec<Block> {
        self.all()
            .filter(|b| b.expires_at.is_some_and(|t| t <= now))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(net: &str, expires: Option<i64>) -> Block {
        Block {
            network: net.parse().unwrap(),
            reason: "test".into(),
            source: "manual".into(),
            blocked_at: Timestamp(0),
            expires_at: expires.map(Timestamp),
        }
    }

    #[test]
    fn hosts_and_ranges_of_both_families() {
        let mut list = Blocklist::default();
        list.insert(block("192.0.2.7/32", None));
        list.insert(block("198.51.100.0/24", Some(100)));
        list.insert(block("2001:db8::/32", None));
        let now = Timestamp(50);
        assert!(list.blocks("192.0.2.7".parse().unwrap(), now));
        assert!(!list.blocks("192.0.2.8".parse().unwrap(), now));
        assert!(list.blocks("198.51.100.200".parse().unwrap(), now));
        assert!(!list.blocks("198.51.101.1".parse().unwrap(), now));
        assert!(list.blocks("2001:db8:1::5".parse().unwrap(), now));
        assert!(!list.blocks("2001:db9::5".parse().unwrap(), now));
        assert!(
            !list.blocks("198.51.100.200".parse().unwrap(), Timestamp(100)),
            "expired"
        );
        assert_eq!(list.expired(Timestamp(100)).len(), 1);
        list.remove(&"198.51.100.0/24".parse().unwrap());
        assert!(list.find("198.51.100.200".parse().unwrap()).is_none());
    }
}
