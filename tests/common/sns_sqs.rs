//! SNS topics with SQS subscribers on moto: what the SNS router's tests and
//! the support_tweets end-to-end test read published messages back with.

use aws_sdk_sqs::types::{Message, QueueAttributeName};

/// Creates a topic (a FIFO topic when `name` ends in `.fifo`); returns its ARN.
pub async fn create_topic(sns: &aws_sdk_sns::Client, name: &str) -> String {
    let mut call = sns.create_topic().name(name);
    if name.ends_with(".fifo") {
        call = call.attributes("FifoTopic", "true");
    }
    let out = call.send().await.expect("CreateTopic");
    out.topic_arn().expect("TopicArn").to_owned()
}

/// Creates a queue (FIFO when `name` ends in `.fifo`) and subscribes it to
/// `topic`, with raw delivery or the SNS envelope, and an optional filter
/// policy; returns the queue URL.
pub async fn subscribed_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic: &str,
    name: &str,
    raw: bool,
    filter: Option<&str>,
) -> String {
    let url = super::moto::create_queue(sqs, name, &[]).await;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("QueueArn")
        .clone();
    let mut subscribe = sns
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn);
    // moto treats any RawMessageDelivery value as on, so leave it out for
    // envelope delivery.
    if raw {
        subscribe = subscribe.attributes("RawMessageDelivery", "true");
    }
    if let Some(policy) = filter {
        subscribe = subscribe.attributes("FilterPolicy", policy);
    }
    subscribe.send().await.expect("Subscribe");
    url
}

/// Every message in the queue, with its attributes, deleted once read (a
/// FIFO queue hands out no more messages of a group while earlier ones are
/// in flight). moto delivers to SQS while it handles the Publish call, so the
/// messages are there once the publisher returns.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        let got = out.messages().to_vec();
        if got.is_empty() {
            return all;
        }
        for m in &got {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().expect("receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
        }
        all.extend(got);
    }
}
