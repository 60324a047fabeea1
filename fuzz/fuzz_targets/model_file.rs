//! The model file loader on arbitrary text: `LocalModel::from_json` must
//! return a model or a `ModelFileError`, never panic or allocate without
//! bound, and a model it accepts must save and load again to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsift::local::LocalModel;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match LocalModel::from_json(text) {
        Ok(model) => {
            let saved = model.to_json();
            let again = match LocalModel::from_json(&saved) {
                Ok(again) => again,
                Err(e) => panic!("a model that loaded does not load again after saving: {e}"),
            };
            assert_eq!(saved, again.to_json(), "save/load is not a fixed point");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
