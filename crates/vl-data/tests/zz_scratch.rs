//! scratch (temporary)
use tokenizers::pipeline::EncodeOptions;
#[test]
fn scratch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clip_tokenizer/tokenizer.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    tokenizers::canonicalize_value(&mut v).unwrap();
    let pre = v["pre_tokenizer"].clone();
    println!("canonical pre {}", pre);
    let m = &v["model"];
    println!("model keys {:?}", m.as_object().unwrap().keys().collect::<Vec<_>>());
    for k in ["byte_level","end_of_word_suffix","continuing_subword_prefix","ignore_merges","unk_token"] { println!("{k} = {}", m[k]); }
    v["pre_tokenizer"] = serde_json::json!({"type": "WhitespaceSplit"});
    let tok = tokenizers::from_json(&v.to_string()).unwrap();
    let opts = EncodeOptions::no_specials();
    let e = tok.encode("a photo of a cat 1 23", &opts).wait().unwrap();
    println!("orig {:?}", e[0].ids().iter().map(|t| t.id()).collect::<Vec<_>>());
    if let tokenizers::pipeline::PipelineModel::BPE(b) = tok.get_model() {
        let c = b.to_config().unwrap();
        println!("cfg suffix {:?} prefix {:?} ignore_merges {} byte_level {}", c.end_of_word_suffix, c.continuing_subword_prefix, c.ignore_merges, c.byte_level);
    }
}
