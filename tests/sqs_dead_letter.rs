//! `SqsDeadLetter` (feature `sqs`, S3 pointers with `s3`) against moto,
//! which serves SQS and S3 on one port: every field round-trips, oversized
//! payloads go to S3 or are cut with a marker, a missing queue or bucket
//! fails at start-up, and an unreachable service is a retryable error.
#![cfg(feature = "sqs")]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use common::moto::{Moto, free_port, sdk_config_for};
use streamsift::sqs::{PayloadStorage, SqsDeadLetter, SqsDeadLetterBody, SqsDeadLetterError};
use streamsift::testing::dead_letter;
use streamsift::{
    DeadLetter, DeadLetterEntry, DeadLetterSink, ErrorClass, Record, Sequence, ShardId, Stage,
};

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, max_size: Option<u32>) -> String {
    let max = max_size.map(|m| m.to_string());
    let attributes: Vec<_> = max
        .iter()
        .map(|m| (QueueAttributeName::MaximumMessageSize, m.as_str()))
        .collect();
    common::moto::create_queue(sqs, name, &attributes).await
}

/// Every message on the queue, read as a new process would, then made
/// visible again (so the next read finds them all).
async fn peek_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        if out.messages().is_empty() {
            break;
        }
        all.extend(out.messages().iter().cloned());
    }
    for m in &all {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().expect("receipt handle"))
            .visibility_timeout(0)
            .send()
            .await
            .expect("ChangeMessageVisibility");
    }
    all
}

fn dead(payload: Vec<u8>) -> DeadLetter {
    let mut record = Record::new(
        ShardId::new("shardId-000000000007"),
        Sequence::with_sub_sequence(
            "49590338271490256608559692538361571095921575989136588898",
            3,
        ),
        "user-42",
        payload,
    );
    record.id = "shardId-000000000007:4959:3".into();
    DeadLetter {
        record,
        stage: Stage::Route,
        class: ErrorClass::Retryable,
        kind: "unavailable".into(),
        reason: "router unavailable (retryable): HTTP 503 \u{fffe} \"quoted\"".into(),
        attempts: 5,
        route: Some("oncall".into()),
        at: UNIX_EPOCH + Duration::from_millis(1_796_000_000_123),
    }
}

#[tokio::test]
async fn the_sink_passes_the_dead_letter_conformance_suite_on_moto() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs, "dl-conformance", None).await;
    let sink = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
    dead_letter::conformance(&sink, || {
        let (sink, sqs, url) = (sink.clone(), sqs.clone(), url.clone());
        async move {
            let mut entries = Vec::new();
            for m in peek_all(&sqs, &url).await {
                let (entry, ..) = sink
                    .read_body(m.message_id().unwrap_or("-"), m.body().unwrap_or(""))
                    .await
                    .expect("our own message reads back");
                entries.push(entry);
            }
            entries
        }
    })
    .await;
}

#[tokio::test]
async fn every_field_round_trips_with_stage_and_kind_as_attributes() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs, "dl-fields", None).await;
    let sink = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
    let dl = dead(vec![0xff, 0xfe, b'{', 0x80, b'x']);
    sink.store(&dl).await.unwrap();

    let messages = peek_all(&sqs, &url).await;
    assert_eq!(messages.len(), 1);
    let attrs = messages[0].message_attributes().expect("attributes");
    let attr = |name: &str| {
        attrs
            .get(name)
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    assert_eq!(attr("stage").as_deref(), Some("route"));
    assert_eq!(attr("kind").as_deref(), Some("unavailable"));
    assert_eq!(attr("payload_storage").as_deref(), Some("inline"));
    let body: serde_json::Value =
        serde_json::from_str(messages[0].body().unwrap()).expect("JSON body");
    assert_eq!(body["format"], "streamsift.dead_letter.v1");
    assert_eq!(body["payload_base64"], "//57gHg=");
    assert_eq!(body["payload_bytes"], 5);

    let received = sink
        .receive(10, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    let got = received[0].as_ref().expect("readable");
    assert_eq!(got.entry, DeadLetterEntry::from_dead_letter(&dl));
    assert_eq!(got.storage, PayloadStorage::Inline);
    assert_eq!(got.truncated, None);
    let record = got.entry.to_record().unwrap();
    assert_eq!(record, {
        let mut r = dl.record.clone();
        r.arrival = record.arrival;
        r
    });
    // Deleted once handled: nothing is left.
    sink.delete(got).await.unwrap();
    assert!(peek_all(&sqs, &url).await.is_empty());
}

#[tokio::test]
async fn without_s3_an_oversized_payload_is_cut_and_the_message_says_so() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    // The queue's own limit (4 KiB) lowers the sink's at start-up.
    let url = queue(&sqs, "dl-small", Some(4096)).await;
    let sink = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
    assert_eq!(sink.max_message_bytes(), 4096);
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    sink.store(&dead(payload.clone())).await.unwrap();

    let messages = peek_all(&sqs, &url).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let attrs = m.message_attributes().expect("attributes");
    let size = m.body().unwrap().len()
        + attrs
            .iter()
            .map(|(k, v)| k.len() + v.data_type().len() + v.string_value().unwrap_or("").len())
            .sum::<usize>();
    assert!(size <= 4096, "message of {size} bytes");
    assert_eq!(
        attrs["payload_storage"].string_value(),
        Some("truncated"),
        "the cut is stated"
    );
    let body = SqsDeadLetterBody::parse(m.body().unwrap()).unwrap();
    let cut = body.payload_truncated.expect("truncation note");
    assert_eq!(cut.original_bytes, 10_000);
    assert!(cut.kept_bytes > 2_000 && cut.kept_bytes < 3_100, "{cut:?}");
    let got = sink
        .read_body("m", m.body().unwrap())
        .await
        .expect("readable");
    assert_eq!(got.1, PayloadStorage::Truncated);
    assert_eq!(
        got.0.payload_bytes().unwrap(),
        payload[..cut.kept_bytes as usize]
    );
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn an_oversized_payload_goes_to_s3_and_reads_back_whole() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("dead-letters")
        .send()
        .await
        .expect("CreateBucket");
    let url = queue(&sqs, "dl-big", None).await;
    let sink = SqsDeadLetter::builder(&config, &url)
        .s3(s3.clone(), "dead-letters")
        .build()
        .await
        .unwrap();
    // 300 KiB: over 256 KiB before base64 grows it by a third.
    let payload: Vec<u8> = (0..300 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    sink.store(&dead(payload.clone())).await.unwrap();
    // A small one stays inline.
    sink.store(&dead(b"{\"id\":1}".to_vec())).await.unwrap();

    let messages = peek_all(&sqs, &url).await;
    assert_eq!(messages.len(), 2);
    let big = messages
        .iter()
        .find(|m| m.message_attributes().unwrap()["payload_storage"].string_value() == Some("s3"))
        .expect("one message points at S3");
    assert!(big.body().unwrap().len() < 4096, "no payload in the body");
    let body = SqsDeadLetterBody::parse(big.body().unwrap()).unwrap();
    let pointer = body.payload_s3.clone().expect("pointer");
    assert_eq!(pointer.bucket, "dead-letters");
    assert_eq!(pointer.size, payload.len() as u64);
    assert!(
        pointer.key.starts_with("streamsift/dead-letters/")
            && pointer.key.ends_with(&pointer.sha256),
        "{pointer:?}"
    );
    assert_eq!(pointer.sha256.len(), 64);
    let object = s3
        .get_object()
        .bucket("dead-letters")
        .key(&pointer.key)
        .send()
        .await
        .expect("the object is there");
    let stored = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&stored[..], &payload[..]);

    let received = sink
        .receive(10, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .unwrap();
    let whole = received
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find(|r| r.storage == PayloadStorage::S3)
        .expect("read back");
    assert_eq!(whole.entry.payload_bytes().unwrap(), payload);
    assert_eq!(whole.entry.reason, dead(Vec::new()).reason);

    // A changed object is caught by its size and hash.
    s3.put_object()
        .bucket("dead-letters")
        .key(&pointer.key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"tampered"))
        .send()
        .await
        .unwrap();
    let err = sink
        .read_body("m-1", big.body().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqsDeadLetterError::Unreadable { detail, .. } if detail.contains("SHA-256")),
        "{err}"
    );
    // A reader without S3 says what it needs.
    let plain = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
    let err = plain
        .read_body("m-1", big.body().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("SqsDeadLetterBuilder::s3"),
        "{err}"
    );
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn a_bucket_that_does_not_exist_fails_at_start_up_naming_it() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs, "dl-nobucket", None).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let started = std::time::Instant::now();
    let err = SqsDeadLetter::builder(&config, &url)
        .s3(s3, "no-such-bucket")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqsDeadLetterError::BucketCheck { bucket, .. } if bucket == "no-such-bucket"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("create the bucket"), "{err}");
    assert!(!err.is_retryable());
    // Refused at once, not retried until the start-up timeout.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_queue_that_does_not_exist_fails_at_start_up_naming_it() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let url = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let started = std::time::Instant::now();
    let err = SqsDeadLetter::builder(&config, &url)
        .build()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, SqsDeadLetterError::QueueCheck { queue, failure, .. }
            if queue == &url && failure.kind == streamsift::aws::AwsErrorKind::NotFound),
        "{err:?}"
    );
    assert!(text.starts_with("create the queue"), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A URL that is not one fails before any call.
    let err = SqsDeadLetter::builder(&config, "dead-letters")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SqsDeadLetterError::InvalidSetting {
                setting: "queue_url",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn moto_down_is_a_retryable_error_and_nothing_is_lost() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = queue(&sqs, "dl-down", None).await;
    let sink = SqsDeadLetter::builder(&config, &url).build().await.unwrap();
    drop(moto);
    let err = sink.store(&dead(b"{}".to_vec())).await.unwrap_err();
    assert!(
        err.is_retryable(),
        "the pipeline retries, then stops: {err}"
    );
    assert!(err.to_string().contains("SendMessage"), "{err}");
    assert!(
        !err.to_string().contains("{}"),
        "no payload in the error: {err}"
    );

    // At start-up, a closed port is retried until the start-up timeout.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = sdk_config_for(&closed).await;
    let err = SqsDeadLetter::builder(&config, format!("{closed}/123456789012/q"))
        .startup_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SqsDeadLetterError::StartupTimeout {
                what: "SQS queue",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
}
