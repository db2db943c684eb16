//! Unit tests of `quota.rs`.

use super::*;

fn limits(requests: Option<RateLimit>, bytes: Option<RateLimit>, max: usize) -> Quotas {
    Quotas::new(QuotaConfig {
        requests,
        ingest_bytes: bytes,
        max_tenants: max,
    })
    .expect("valid")
}

#[test]
fn unlimited_by_default() {
    let q = Quotas::new(QuotaConfig::default()).expect("valid");
    let t0 = Instant::now();
    assert!(!q.is_enabled());
    for _ in 0..10_000 {
        assert!(q.check_request(Some("a"), t0).is_ok());
    }
    assert!(q.check_ingest_bytes(Some("a"), u64::MAX, t0).is_ok());
    assert_eq!(q.tracked_tenants(), 0);
}

#[test]
fn request_bucket_allows_burst_then_refills_at_rate() {
    let rate = RateLimit {
        per_second: 10.0,
        burst: 3.0,
    };
    let q = limits(Some(rate), None, 10);
    let t0 = Instant::now();
    for _ in 0..3 {
        q.check_request(Some("a"), t0).expect("within burst");
    }
    let err = q.check_request(Some("a"), t0).expect_err("burst spent");
    assert_eq!(err.kind, ErrorKind::ResourceExhausted);
    assert_eq!(err.retry_after, Some(Duration::from_millis(100)));
    assert!(
        err.message.contains("retry after 100 ms"),
        "{}",
        err.message
    );
    assert!(err.message.contains("`a`"));
    // Another tenant has its own bucket.
    q.check_request(Some("b"), t0).expect("separate bucket");
    // 50 ms later half a token is back: still refused, 50 ms to go.
    let err = q
        .check_request(Some("a"), t0 + Duration::from_millis(50))
        .expect_err("half a token");
    assert_eq!(err.retry_after, Some(Duration::from_millis(50)));
    q.check_request(Some("a"), t0 + Duration::from_millis(100))
        .expect("one token refilled");
}

#[test]
fn large_write_is_admitted_when_full_and_leaves_debt() {
    let rate = RateLimit {
        per_second: 1000.0,
        burst: 100.0,
    };
    let q = limits(None, Some(rate), 10);
    let t0 = Instant::now();
    q.check_ingest_bytes(None, 300, t0)
        .expect("full bucket admits");
    // 200 bytes of debt + 1 byte needed → 201 ms.
    let err = q.check_ingest_bytes(None, 1, t0).expect_err("in debt");
    assert_eq!(err.retry_after, Some(Duration::from_millis(201)));
    assert!(err.message.contains("`default`"));
    q.check_ingest_bytes(None, 1, t0 + Duration::from_millis(201))
        .expect("debt repaid");
}

#[test]
fn tenant_map_is_bounded() {
    let rate = RateLimit {
        per_second: 1.0,
        burst: 1.0,
    };
    let q = limits(Some(rate), None, 2);
    let t0 = Instant::now();
    q.check_request(Some("a"), t0).expect("a");
    q.check_request(Some("b"), t0 + Duration::from_millis(1))
        .expect("b");
    q.check_request(Some("c"), t0 + Duration::from_millis(2))
        .expect("c");
    assert_eq!(q.tracked_tenants(), 2);
    // `a` was least recently seen and evicted: it starts over with a full bucket,
    // while `c` (still tracked) is refused.
    q.check_request(Some("a"), t0 + Duration::from_millis(3))
        .expect("a forgotten, full again");
    assert!(
        q.check_request(Some("a"), t0 + Duration::from_millis(4))
            .is_err()
    );
    assert_eq!(q.tracked_tenants(), 2);
}

#[test]
fn refilled_tenants_are_forgotten_before_recent_ones() {
    let rate = RateLimit {
        per_second: 1.0,
        burst: 1.0,
    };
    let q = limits(Some(rate), Some(rate), 2);
    let t0 = Instant::now();
    // `b` writes far more than its burst: admitted, 9 bytes of debt.
    q.check_ingest_bytes(Some("b"), 10, t0).expect("b full");
    // `a` is seen later than `b`.
    q.check_request(Some("a"), t0 + Duration::from_secs(1))
        .expect("a");
    // At 2.5 s `a` has refilled (idle) while `b` is still in debt. A new tenant evicts
    // `a`, although `b` is the least recently seen.
    q.check_request(Some("c"), t0 + Duration::from_millis(2_500))
        .expect("c");
    assert_eq!(q.tracked_tenants(), 2);
    let err = q
        .check_ingest_bytes(Some("b"), 1, t0 + Duration::from_millis(2_600))
        .expect_err("b still tracked, still in debt");
    assert_eq!(err.kind, ErrorKind::ResourceExhausted);
}

#[test]
fn invalid_config_is_rejected() {
    let bad = QuotaConfig {
        requests: Some(RateLimit {
            per_second: 0.0,
            burst: 1.0,
        }),
        ..QuotaConfig::default()
    };
    assert!(Quotas::new(bad).is_err());
    let bad = QuotaConfig {
        max_tenants: 0,
        ..QuotaConfig::default()
    };
    assert!(Quotas::new(bad).is_err());
}
