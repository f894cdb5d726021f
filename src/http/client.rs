//! Who the client is, network-wise: the TCP peer, or, when the peer is a trusted reverse proxy
//! (`http.trusted_proxies`), the address that proxy reports in `X-Forwarded-For`. Anyone else's
//! `X-Forwarded-For` and `X-Forwarded-Proto` are ignored, so a client cannot choose the address
//! its requests are counted under.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The address rate limits count the request under.
    pub ip: IpAddr,
    /// Whether the client reached us over HTTPS (said by a trusted proxy).
    pub https: bool,
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client of a request that came from `peer` with `headers`.
pub fn client(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> Client {
    let Some(peer) = peer else {
        return Client {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            https: false,
        };
    };
    if !trusted(peer, proxies) {
        return Client {
            ip: peer,
            https: false,
        };
    }
    // Right to left: each trusted proxy appended the address it got the request from; the
    // first address that is not a trusted proxy is the client.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut ip = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(hop) if trusted(hop, proxies) => ip = hop,
            Ok(hop) => {
                ip = hop;
                break;
            }
            // Garbage: keep the last address a trusted proxy vouched for.
            Err(_) => break,
        }
    }
    // The proto the nearest proxy saw (the last value it set).
    let https = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back()
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Client { ip, https }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str, proto: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let h = headers("203.0.113.7, 198.51.100.2", Some("https"));
        // An untrusted peer: its headers are ignored.
        assert_eq!(
            client(peer("192.0.2.9"), &h, &proxies),
            Client {
                ip: "192.0.2.9".parse().unwrap(),
                https: false
            }
        );
        // A trusted proxy: the rightmost address that is not a trusted proxy.
        assert_eq!(
            client(peer("10.0.0.5"), &h, &proxies),
            Client {
                ip: "198.51.100.2".parse().unwrap(),
                https: true
            }
        );
        let chain = headers("203.0.113.7, 10.0.0.9", Some("http"));
        assert_eq!(
            client(peer("10.0.0.5"), &chain, &proxies).ip,
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let garbage = headers("bogus, 10.0.0.9", None);
        assert_eq!(
            client(peer("10.0.0.5"), &garbage, &proxies).ip,
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        assert!(!client(peer("10.0.0.5"), &garbage, &proxies).https);
        assert_eq!(
            client(peer("::ffff:10.0.0.5"), &h, &proxies).ip,
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
    }
}
