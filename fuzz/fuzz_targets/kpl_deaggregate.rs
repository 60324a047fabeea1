//! KPL de-aggregation on arbitrary bytes.
//!
//! The input is tried twice: as a whole payload (exercises the framing and
//! the digest check), and as the body of an aggregate framed with the magic
//! bytes and a correct MD5 trailer (so the protobuf parser behind the digest
//! check sees arbitrary bytes too). Neither may panic, and the copying and
//! the zero-copy entry points must agree.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use streamsift::kinesis::kpl::{self, Deaggregator};

fn check(payload: &[u8]) {
    let copied = kpl::deaggregate(payload);
    let shared = kpl::deaggregate_bytes(&Bytes::copy_from_slice(payload));
    assert_eq!(copied, shared, "deaggregate and deaggregate_bytes disagree");
    if let Ok(Some(records)) = &copied {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.sub_sequence, i as u64, "sub-sequences are 0, 1, 2...");
            assert!(
                r.data.len() <= payload.len(),
                "user record larger than its aggregate"
            );
        }
    }
    // Tight limits must give errors, never panics.
    let _ = Deaggregator::new()
        .max_records(2)
        .max_key_bytes(4)
        .max_payload_bytes(64)
        .deaggregate(payload);
}

fuzz_target!(|body: &[u8]| {
    check(body);
    let mut framed = Vec::with_capacity(body.len() + kpl::MIN_AGGREGATE_LEN);
    framed.extend_from_slice(&kpl::MAGIC);
    framed.extend_from_slice(body);
    let digest: [u8; 16] = Md5::digest(body).into();
    framed.extend_from_slice(&digest);
    check(&framed);
});
