//! Rate limits per client address: how many registrations, or failed
//! logins, one address may cause in a period. A token bucket per address
//! (a burst of the whole allowance, then it comes back evenly over the
//! period), in a map bounded by count. IPv6 clients count by their /64,
//! which is what one client usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest period: a year, like every duration the server takes.
const MAX_PERIOD_SECS: u64 = 366 * 24 * 3600;
/// Addresses remembered at most; an address whose bucket is full again is
/// forgotten first.
const MAX_ADDRESSES: usize = 65_536;

/// `count` events per `period`, e.g. `10/h` or `30/10m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected COUNT/PERIOD, e.g. 10/h, 30/10m or 5/30s (s, m, h, d), or off")]
pub struct RateError;

impl FromStr for Rate {
    type Err = RateError;

    /// `COUNT/PERIOD`; the period a unit (`s`, `m`, `h`, `d`) with an
    /// optional number in front. `off` is a count of 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self {
                count: 0,
                period: Duration::from_secs(1),
            });
        }
        let (count, period) = s.split_once('/').ok_or(RateError)?;
        let count: u32 = count.parse().map_err(|_| RateError)?;
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(RateError)?;
        let (number, unit) = period.split_at(unit_at);
        let number: u64 = if number.is_empty() {
            1
        } else {
            number.parse().map_err(|_| RateError)?
        };
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(RateError),
        };
        let secs = number
            .checked_mul(unit)
            .filter(|&secs| (1..=MAX_PERIOD_SECS).contains(&secs))
            .ok_or(RateError)?;
        Ok(Self {
            count,
            period: Duration::from_secs(secs),
        })
    }
}

/// The key an address counts under: one client, as far as an address
/// tells (an IPv4 address, an IPv6 /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    V4(u32),
    /// The /64 network.
    V6(u64),
}

impl Key {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Key::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::V4(v4.into()),
                None => Key::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One kind of event, limited per address.
pub struct PerAddress {
    rate: Rate,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl PerAddress {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn per_sec(&self) -> f64 {
        f64::from(self.rate.count) / self.rate.period.as_secs_f64()
    }

    /// The bucket's tokens at `now`, refilled since it was last seen.
    fn tokens(&self, bucket: &Bucket, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_sec();
        (bucket.tokens + refill).min(f64::from(self.rate.count))
    }

    /// Takes one event of `ip`'s allowance, or `Err(seconds)` while it is
    /// used up: how long until one more event is allowed.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.rate.count == 0 {
            return Ok(());
        }
        let key = Key::of(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = match buckets.get(&key) {
            Some(bucket) => self.tokens(bucket, now),
            None => {
                if buckets.len() >= MAX_ADDRESSES {
                    self.make_room(&mut buckets, now);
                }
                f64::from(self.rate.count)
            }
        };
        if tokens < 1.0 {
            let secs = ((1.0 - tokens) / self.per_sec()).ceil() as u64;
            return Err(secs.max(1));
        }
        buckets.insert(
            key,
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Gives back what [`PerAddress::take`] took: the event did not count
    /// after all (a login that turned out right).
    pub fn give_back(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&Key::of(ip)) {
            bucket.tokens = (self.tokens(bucket, now) + 1.0).min(f64::from(self.rate.count));
            bucket.at = now;
        }
    }

    /// Forgets the addresses whose buckets are full again (they are as if
    /// never seen); if none is, the one closest to full.
    fn make_room(&self, buckets: &mut HashMap<Key, Bucket>, now: Instant) {
        let full = f64::from(self.rate.count);
        buckets.retain(|_, bucket| self.tokens(bucket, now) < full);
        if buckets.len() >= MAX_ADDRESSES {
            let fullest = buckets
                .iter()
                .max_by(|a, b| self.tokens(a.1, now).total_cmp(&self.tokens(b.1, now)))
                .map(|(key, _)| *key);
            if let Some(key) = fullest {
                buckets.remove(&key);
            }
        }
    }

    /// Forgets the addresses whose buckets are full again.
    pub fn purge(&self, now: Instant) {
        let full = f64::from(self.rate.count);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|_, bucket| self.tokens(bucket, now) < full);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let rate = |count, secs| {
            Ok(Rate {
                count,
                period: Duration::from_secs(secs),
            })
        };
        assert_eq!("10/h".parse(), rate(10, 3600));
        assert_eq!("30/10m".parse(), rate(30, 600));
        assert_eq!("5/30s".parse(), rate(5, 30));
        assert_eq!("1/2d".parse(), rate(1, 172_800));
        assert_eq!("off".parse::<Rate>().map(|r| r.count), Ok(0));
        for bad in [
            "",
            "10",
            "10/",
            "10/x",
            "x/h",
            "10/0s",
            "-1/h",
            "10/h/2",
            "10/99999d",
        ] {
            assert_eq!(bad.parse::<Rate>(), Err(RateError), "{bad:?}");
        }
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits_for_it_to_come_back() {
        let limit = PerAddress::new("2/10s".parse().unwrap());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let start = Instant::now();
        assert_eq!(limit.take(ip, start), Ok(()));
        assert_eq!(limit.take(ip, start), Ok(()));
        assert_eq!(limit.take(ip, start), Err(5));
        assert_eq!(limit.take(other, start), Ok(()));
        assert_eq!(limit.take(ip, start + Duration::from_secs(4)), Err(1));
        limit.give_back(ip, start + Duration::from_secs(4));
        assert_eq!(limit.take(ip, start + Duration::from_secs(4)), Ok(()));
        assert_eq!(limit.take(ip, start + Duration::from_secs(9)), Ok(()));
        limit.purge(start + Duration::from_secs(20));
        assert_eq!(limit.len(), 0, "a full bucket is forgotten");
    }

    #[test]
    fn ipv6_clients_count_by_their_network_and_mapped_ipv4_as_ipv4() {
        let limit = PerAddress::new("1/h".parse().unwrap());
        let now = Instant::now();
        assert!(limit.take("2001:db8::1".parse().unwrap(), now).is_ok());
        assert!(limit.take("2001:db8::2".parse().unwrap(), now).is_err());
        assert!(limit.take("2001:db8:0:1::1".parse().unwrap(), now).is_ok());
        assert!(limit.take("192.0.2.1".parse().unwrap(), now).is_ok());
        assert!(
            limit
                .take("::ffff:192.0.2.1".parse().unwrap(), now)
                .is_err()
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let limit = PerAddress::new("5/h".parse().unwrap());
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 + 100) {
            let _ = limit.take(IpAddr::V4(n.into()), now);
        }
        assert!(limit.len() <= MAX_ADDRESSES);
    }
}
