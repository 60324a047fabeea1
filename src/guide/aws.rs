//! Running on AWS: the backends, the IAM they need, and a dry run on moto.
//!
//! Each AWS backend is its own cargo feature and pulls in only its own SDK
//! crate; `aws` turns them all on. They take an `aws_config::SdkConfig`, so
//! one config (credentials, region, an emulator's endpoint URL) serves every
//! client of a process.
//!
//! | stage | backend | feature |
//! |---|---|---|
//! | source | `kinesis::KinesisSource` (polling or enhanced fan-out) | `kinesis` |
//! | checkpoints | `checkpoint::dynamodb::DynamoDbCheckpointStore`, a KCL-shaped lease table | `dynamodb` |
//! | classify | `machine_learning::AmazonMlClassifier` (Amazon ML realtime `Predict`) | `machine-learning` |
//! | classify | `sagemaker::SageMakerClassifier` (`InvokeEndpoint`, optional micro-batching) | `sagemaker` |
//! | route | `sns::SnsRouter` (a topic per route, message attributes, PublishBatch) | `sns` |
//! | label | `mturk::MturkLabeler` (sandbox by default) | `mturk` |
//!
//! The backends share one constructor shape, the AWS SDK's:
//! `Backend::builder(&sdk_config, …)…build()`, or
//! `Backend::builder_from_client(client, …)` to hand in a client you
//! configured yourself (an emulator, a test). Both turn the SDK client's own
//! retries off. Their SDK errors are classified once, in
//! `streamsift::aws` (throttling, 5xx and expired credentials
//! retryable; missing resources, refused permissions and bad input
//! permanent), and retries are the pipeline's [`RetryPolicy`](crate::RetryPolicy):
//! one backend attempt and one HTTP request per pipeline attempt, so with
//! the default 5 attempts a record costs at most 5 calls to SNS, SageMaker
//! or Amazon ML. Where a backend resends part of a batch (PublishBatch
//! entries that failed), the record's deadline bounds it.
//!
//! Configuration is checked before the first record where the API allows:
//! `SnsRouterBuilder::build` calls GetTopicAttributes on every topic, the
//! Amazon ML builder calls GetMLModel, the DynamoDB store's build calls
//! DescribeTable, and the Kinesis source's first read describes the stream.
//! A missing resource fails at once, naming it; a service that does not
//! answer fails after `startup_timeout` (30 s by default). SageMaker's
//! runtime API has no call that checks an endpoint without invoking it, so
//! a wrong endpoint name shows on the first record.
//!
//! # Kinesis
//!
//! The Kinesis source and producer have their own guide,
//! `guide::kinesis` (feature `kinesis`).
//!
//! # The `support_tweets` example on AWS
//!
//! With `--features aws`, `support_tweets` can move each stage to an AWS
//! service, alone or together; without any of these flags it runs offline.
//! Every flag has an environment variable (`STREAMSIFT_…`); a flag wins over
//! its variable. `--help` lists them all.
//!
//! | flag | what it does |
//! |---|---|
//! | `--kinesis-stream NAME` | read tweets from this stream instead of the bundled file |
//! | `--checkpoint-dir DIR` / `--checkpoint-table TABLE` | checkpoints in files, or in a DynamoDB lease table (created if missing) |
//! | `--from-start` | a shard with no checkpoint starts at `TRIM_HORIZON` (otherwise `LATEST`) |
//! | `--stop-at-tip` | end once every shard is read to its tip (otherwise run until Ctrl-C) |
//! | `--ml-model-id ID` / `--sagemaker-endpoint NAME` | classify remotely instead of with the bundled local model |
//! | `--sns-topic-arn [ROUTE=]ARN` | publish with SNS; repeatable. A plain ARN takes every route, `ROUTE=ARN` one route |
//! | `--endpoint-url URL` | an emulator's URL, for every AWS client of the run |
//! | `--region REGION` | otherwise the default chain's, otherwise us-east-1 |
//! | `--dead-letter PATH` | where dead letters go |
//!
//! The routes are the four team labels (`problem_report`,
//! `support_request`, `technical_question`, `feature_request`), `review`
//! (human triage) and, for a binary remote model, `actionable`. A route with
//! no topic stays in the local inbox the example prints. Each SNS message
//! carries the attributes `label`, `route`, `score`, `record_id` and `source`
//! (the stream), so one topic can feed a queue per team through
//! subscription filter policies such as `{"route": ["problem_report"]}`.
//!
//! Credentials come from aws-config's default chain and are never printed.
//! With `--endpoint-url` and no credentials configured, dummy ones are used,
//! since emulators accept any.
//!
//! ## Against moto (no AWS account)
//!
//! You need moto (`./scripts/test.sh` installs it into `.venv`) and the aws
//! CLI: AWS CLI v2 from AWS's installer, or v1 from PyPI in a venv of its
//! own (`python3 -m venv .awscli && .awscli/bin/pip install awscli`; not in
//! `.venv`, since awscli pins a botocore that may not be moto's). The CLI reads
//! its region from `AWS_DEFAULT_REGION`; the Rust SDK reads `AWS_REGION`
//! (and falls back to the other). Set both:
//!
//! ```sh
//! .venv/bin/moto_server -H 127.0.0.1 -p 5000 &
//! export PATH="$PWD/.awscli/bin:$PATH"
//! export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
//! export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
//! endpoint=http://127.0.0.1:5000
//!
//! cargo run --example push_tweets --features kinesis -- \
//!     --stream tweets --file examples/data/tweets.jsonl --endpoint-url $endpoint --create-shards 2
//!
//! # A topic and an SQS queue per route (two here), subscribed with raw delivery.
//! topics=()
//! for route in problem_report review; do
//!   arn=$(aws --endpoint-url $endpoint sns create-topic --name support-$route --query TopicArn --output text)
//!   url=$(aws --endpoint-url $endpoint sqs create-queue --queue-name q-$route --query QueueUrl --output text)
//!   qarn=$(aws --endpoint-url $endpoint sqs get-queue-attributes --queue-url $url \
//!            --attribute-names QueueArn --query Attributes.QueueArn --output text)
//!   aws --endpoint-url $endpoint sns subscribe --topic-arn $arn --protocol sqs \
//!       --notification-endpoint $qarn --attributes RawMessageDelivery=true
//!   topics+=(--sns-topic-arn "$route=$arn")
//! done
//!
//! cargo run --example support_tweets --features aws -- \
//!     --kinesis-stream tweets --from-start --stop-at-tip --endpoint-url $endpoint "${topics[@]}"
//!
//! # What reached a queue: the body is the notification, the attributes are SQS message attributes.
//! url=$(aws --endpoint-url $endpoint sqs get-queue-url --queue-name q-problem_report --query QueueUrl --output text)
//! aws --endpoint-url $endpoint sqs receive-message --queue-url $url \
//!     --max-number-of-messages 10 --message-attribute-names All
//! ```
//!
//! The example prints, per route, how many notifications it made and the
//! topic it published them to; each queue then holds that many messages
//! (`aws sqs get-queue-attributes --attribute-names ApproximateNumberOfMessages`).
//! `push_tweets` skips the bundled file's empty line, and the other malformed
//! lines are dead-lettered with their reason.
//!
//! **Raw delivery.** With `RawMessageDelivery=true` an SQS message's body is
//! the notification itself and `label`, `route`, `score`, `record_id` and
//! `source` arrive as SQS message attributes. Without it, the body is SNS's
//! JSON envelope and the attributes sit inside it, under
//! `MessageAttributes`.
//!
//! A second run with the same `--checkpoint-dir` resumes after the committed
//! checkpoints, reads nothing new and publishes nothing.
//! `tests/support_tweets_aws.rs` (`cargo test --all-features --test
//! support_tweets_aws`) runs this same code path against a moto it starts
//! itself: with a topic per route, and with one topic and a filtered queue
//! per route. It checks that every queue holds exactly the tweets the model
//! and policy send to its route, once each, with the right attributes; that
//! the malformed lines are dead-lettered; that the run report reconciles;
//! and that a second run reads nothing.
//!
//! ## Against AWS
//!
//! ```sh
//! # once: a stream, a topic (an email subscriber confirms by mail), and the role below
//! aws kinesis create-stream --stream-name tweets --shard-count 1
//! aws sns create-topic --name support-incidents
//! aws sns subscribe --topic-arn arn:aws:sns:us-east-1:ACCOUNT:support-incidents \
//!     --protocol email --notification-endpoint oncall@example.com
//! cargo run --release --example push_tweets --features kinesis -- --stream tweets --file examples/data/tweets.jsonl
//! STREAMSIFT_KINESIS_STREAM=tweets STREAMSIFT_CHECKPOINT_TABLE=support-tweets-leases \
//! STREAMSIFT_SNS_TOPIC_ARN=problem_report=arn:aws:sns:us-east-1:ACCOUNT:support-incidents \
//!     cargo run --release --example support_tweets --features aws -- --from-start
//! ```
//!
//! # IAM: least privilege per backend
//!
//! Grant only the stages you turn on; replace `REGION`, `ACCOUNT` and the
//! names. The Kinesis source, polling:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow",
//!    "Action": ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"],
//!    "Resource": "arn:aws:kinesis:REGION:ACCOUNT:stream/tweets"}
//! ]}
//! ```
//!
//! With enhanced fan-out, add:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow",
//!    "Action": ["kinesis:DescribeStreamSummary", "kinesis:RegisterStreamConsumer"],
//!    "Resource": "arn:aws:kinesis:REGION:ACCOUNT:stream/tweets"},
//!   {"Effect": "Allow",
//!    "Action": ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"],
//!    "Resource": "arn:aws:kinesis:REGION:ACCOUNT:stream/tweets/consumer/*"}
//! ]}
//! ```
//!
//! For an encrypted stream, `kms:Decrypt` on its key. The producer is a
//! separate role: `kinesis:PutRecords` on the stream, plus
//! `kinesis:ListShards` when it aggregates. DynamoDB checkpoints:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow",
//!    "Action": ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
//!    "Resource": "arn:aws:dynamodb:REGION:ACCOUNT:table/support-tweets-leases"}
//! ]}
//! ```
//!
//! plus `dynamodb:CreateTable` if the app creates the table
//! (`create_table_if_missing`), and `dynamodb:Scan` only to list leases.
//! The file store needs no permission. Amazon ML (GetMLModel finds the
//! realtime endpoint at start-up, Predict classifies):
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow",
//!    "Action": ["machinelearning:GetMLModel", "machinelearning:Predict"],
//!    "Resource": "arn:aws:machinelearning:REGION:ACCOUNT:mlmodel/ml-MODELID"}
//! ]}
//! ```
//!
//! SageMaker:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
//!    "Resource": "arn:aws:sagemaker:REGION:ACCOUNT:endpoint/tweet-triage"}
//! ]}
//! ```
//!
//! SNS (PublishBatch is authorised by `sns:Publish`), one ARN per topic,
//! plus `kms:GenerateDataKey*` and `kms:Decrypt` on the key of an encrypted
//! topic:
//!
//! ```json
//! {"Version": "2012-10-17", "Statement": [
//!   {"Effect": "Allow", "Action": "sns:Publish",
//!    "Resource": ["arn:aws:sns:REGION:ACCOUNT:support-incidents", "arn:aws:sns:REGION:ACCOUNT:support-all"]}
//! ]}
//! ```
//!
//! The roles of a Lambda function and of KCL workers are in their guides.
//!
//! # From Amazon ML to a SageMaker endpoint
//!
//! Amazon ML accepts no new users and cannot export a model, so moving means
//! retraining. Its models are linear, and its recipe transforms text
//! server-side; a SageMaker model sees the raw body, so those
//! transformations move into the container (SageMaker's Linear Learner is
//! the nearest built-in). Deploy the model, endpoint configuration and
//! endpoint, then replace `--ml-model-id` with `--sagemaker-endpoint` and
//! the role's `machinelearning:*` actions with `sagemaker:InvokeEndpoint`.
//! Nothing else changes: both are classifiers with the same error classes.
//! Or skip the endpoint: [`local_classifier`](super::local_classifier)
//! trains a comparable model in-process.
//!
//! | | Amazon ML `Predict` | SageMaker `InvokeEndpoint` |
//! |---|---|---|
//! | request | a flat map of strings (the item's JSON flattened), at most 100 KB | any body: the item's JSON (`JsonRequest`) or CSV (`CsvRequest`), at most 6 MB |
//! | response | `predictedLabel`, `predictedScores` | what the container returns; `JsonResponse` reads `{"label","scores"}` or `{"predictions":[…]}` |
//! | rate | the endpoint's peak, paced client-side | the instances' capacity; throttling is retryable |
//! | batching | one item per call | `max_batch_size` items per call; concurrent `classify` calls are micro-batched (wait up to `linger`) |
//!
//! # Cost
//!
//! Amazon ML charges per prediction plus an hourly reserved capacity;
//! SageMaker per instance-hour (or, serverless, per compute time); SNS per
//! publish and per delivery (email and SMS cost more than SQS or HTTP);
//! Kinesis per shard-hour and per 25 KB PUT unit. The local model costs
//! nothing per record beyond the machine. The arithmetic on the bundled run,
//! with the prices and where they came from, is in `benches/README.md`;
//! check the pricing pages before relying on it.
