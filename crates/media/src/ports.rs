//! RTP/RTCP port pairs from a range (`rtp.port_min..=port_max`): RTP on an even port,
//! RTCP on the next one (RFC 3550 §11). A released pair goes to the back of the queue,
//! so a port is reused as late as possible and stray packets of an ended call do not
//! reach the next one.

use std::collections::VecDeque;

/// The free pairs of a range, by their even (RTP) port.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    /// Whether each pair of the range is in `free`, by `(port - first) / 2`: a release
    /// checks for doubles without scanning a queue of up to 32,768 pairs (two per call).
    is_free: Vec<bool>,
    first: u16,
}

impl PortPool {
    /// Every even port `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> Self {
        let first = min.saturating_add(min % 2);
        let free: VecDeque<u16> = (first..max)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|rtcp| rtcp <= max))
            .collect();
        let is_free = vec![true; free.len()];
        Self {
            free,
            is_free,
            first,
        }
    }

    fn slot(&self, rtp_port: u16) -> Option<usize> {
        let offset = rtp_port.checked_sub(self.first)?;
        let slot = usize::from(offset / 2);
        (offset.is_multiple_of(2) && slot < self.is_free.len()).then_some(slot)
    }

    /// A free pair's RTP port, or `None` when all are in use.
    pub fn take(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        if let Some(slot) = self.slot(port) {
            self.is_free[slot] = false;
        }
        Some(port)
    }

    /// Gives back a pair taken from this pool. A port outside the range, odd, or
    /// already free is ignored, so a double release cannot hand one pair out twice.
    pub fn put(&mut self, rtp_port: u16) {
        if let Some(slot) = self.slot(rtp_port)
            && !self.is_free[slot]
        {
            self.is_free[slot] = true;
            self.free.push_back(rtp_port);
        }
    }

    /// Pairs free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_inside_the_range_and_reused_last() {
        let mut pool = PortPool::new(10001, 10008);
        // 10002/3, 10004/5, 10006/7; 10008 has no RTCP port inside the range.
        assert_eq!(pool.available(), 3);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!((a, b), (10002, 10004));
        pool.put(a);
        assert_eq!(pool.take(), Some(10006), "the oldest free pair first");
        assert_eq!(pool.take(), Some(10002));
        assert_eq!(pool.take(), None, "exhausted");
    }

    #[test]
    fn bad_or_double_releases_change_nothing() {
        let mut pool = PortPool::new(10000, 10003);
        let a = pool.take().unwrap();
        pool.put(a);
        pool.put(a);
        pool.put(10001);
        pool.put(9998);
        pool.put(20000);
        assert_eq!(pool.available(), 2);
        assert_eq!(pool.take(), Some(10002));
        assert_eq!(pool.take(), Some(10000));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn the_default_range_holds_five_thousand_legs() {
        let pool = PortPool::new(10000, 20000);
        assert_eq!(pool.available(), 5000);
        assert_eq!(PortPool::new(65534, 65535).available(), 1);
        assert_eq!(PortPool::new(10, 10).available(), 0);
    }
}
