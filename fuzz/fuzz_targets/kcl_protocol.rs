//! The KCL MultiLang protocol handler on arbitrary daemon input: the bytes
//! are what the daemon writes to the record processor's stdin (JSON lines:
//! initialize, processRecords with base64 data, checkpoint answers,
//! shutdown...). `KclProcessor::run` must end with a summary or a
//! `KclError`, never panic, and what it writes back must be JSON lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsift::kcl::KclProcessor;
use streamsift::{ClassifyError, MemoryDeadLetter, Policy, Prediction};
use streamsift::fakes::RecordingRouter;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(processor) = streamsift::batch::builder()
            .decode(streamsift::Utf8)
            .classify(|t: &String| {
                let score = if t.contains('!') { 0.9 } else { 0.1 };
                async move { Ok::<_, ClassifyError>(Prediction::binary("a", "b", score)) }
            })
            .policy(Policy::binary(0.5, "oncall"))
            .route(RecordingRouter::new())
            .dead_letter(MemoryDeadLetter::new())
            .into_batch_processor()
        else {
            return;
        };
        let kcl = KclProcessor::new(processor)
            .checkpoint_backoff(std::time::Duration::from_millis(1));
        let mut output: Vec<u8> = Vec::new();
        let result = kcl.run(data, &mut output).await;
        if let Err(e) = &result {
            assert!(!e.to_string().is_empty());
        }
        let text = String::from_utf8(output).expect("the processor writes UTF-8");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("the processor wrote a line that is not JSON: {line:?}: {e}"));
        }
    });
});
