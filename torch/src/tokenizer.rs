//! Tokenizers: `tokenizer.json` through the `tokenizers` crate, and the tiny byte-level BPE
//! tokenizer built for the task text.
//!
//! The tiny tokenizer has Qwen2's shape (byte-level pre-tokenizer and decoder, BPE model,
//! ChatML special tokens) so every tool that reads a Qwen tokenizer reads it, and every
//! byte sequence encodes (the 256 byte symbols are the base vocabulary; nothing is
//! unknown). Its merges are built deterministically from word counts of a corpus: each
//! frequent word gets merges that assemble it whole, in order of frequency. That is not
//! the BPE training algorithm (no pair statistics), but it is deterministic, fast, and
//! gives the task's frequent words single tokens, which is what a tiny model needs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use crate::error::{io, Result, TorchError};

/// The end-of-text token (Qwen's padding and base-model end).
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Opens a ChatML turn.
pub const IM_START: &str = "<|im_start|>";
/// Ends a ChatML turn (the chat models' end-of-sequence).
pub const IM_END: &str = "<|im_end|>";
/// The ChatML tokens, special (skipped when decoding without special tokens).
pub const SPECIAL_TOKENS: [&str; 3] = [END_OF_TEXT, IM_START, IM_END];
/// The paper's tags, added as single tokens in tiny tokenizers (not special: they are text
/// the reward function reads).
pub const TAG_TOKENS: [&str; 4] = ["<think>", "</think>", "<answer>", "</answer>"];

/// Qwen2's pre-tokenizer regex: contractions, letter runs (with one leading non-letter),
/// single digits, punctuation runs, newlines, spaces.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's `pre_tokenizer` section: the split above, then byte-level mapping. Tiny
/// tokenizers use exactly this, so `transformers`' `Qwen2Tokenizer` (which imposes it)
/// and the `tokenizers` crate split text the same way.
pub fn qwen2_pre_tokenizer() -> serde_json::Value {
    serde_json::json!({
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        ]
    })
}

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tokenizer_error(error: impl std::fmt::Display) -> TorchError {
    TorchError::Tokenizer(error.to_string())
}

impl Tokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let inner = text
            .parse::<tokenizers::Tokenizer>()
            .map_err(|error| TorchError::Tokenizer(format!("`{}`: {error}", path.display())))?;
        Ok(Self { inner })
    }

    /// Parses `tokenizer.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        let inner = text
            .parse::<tokenizers::Tokenizer>()
            .map_err(tokenizer_error)?;
        Ok(Self { inner })
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tokenizer_error)
    }

    /// Token ids of `text`, with no special tokens added (prompts carry their own).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self.inner.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&id| u32::try_from(id).map_err(|_| tokenizer_error(format!("bad id {id}"))))
            .collect::<Result<_>>()?;
        self.inner.decode(&ids, false).map_err(tokenizer_error)
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// GPT-2's reversible map from bytes to printable characters, which byte-level BPE
/// vocabularies are written in.
pub fn byte_symbols() -> [char; 256] {
    let mut symbols = ['\0'; 256];
    let mut extra = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        symbols[byte as usize] = if printable {
            char::from(byte)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{FFFD}')
        };
    }
    symbols
}

/// Builds a tiny byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct TinyTokenizerBuilder {
    /// The largest vocabulary, added tokens included (at least 256 + 7).
    pub max_vocab: usize,
    /// Words seen fewer times than this get no merges.
    pub min_count: u64,
}

impl Default for TinyTokenizerBuilder {
    fn default() -> Self {
        Self {
            max_vocab: peirce_protocol::params::ModelParams::default()
                .max_vocab
                .get() as usize,
            min_count: 2,
        }
    }
}

/// The byte-level BPE over `word`'s symbols with `ranks`, as the tokenizers crate applies
/// it: repeatedly merge the adjacent pair of lowest rank.
fn apply_merges(word: &str, ranks: &HashMap<(String, String), usize>) -> Vec<String> {
    let mut parts: Vec<String> = word.chars().map(String::from).collect();
    loop {
        let best = parts
            .windows(2)
            .enumerate()
            .filter_map(|(at, pair)| {
                ranks
                    .get(&(pair[0].clone(), pair[1].clone()))
                    .map(|&rank| (rank, at))
            })
            .min();
        let Some((_, at)) = best else {
            return parts;
        };
        let right = parts.remove(at + 1);
        parts[at].push_str(&right);
    }
}

impl TinyTokenizerBuilder {
    /// Word counts of `texts` after byte-level pre-tokenization, with the added tokens cut
    /// out first (they never take part in merges).
    fn count_words<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, u64>> {
        let pre: PreTokenizerWrapper =
            serde_json::from_value(qwen2_pre_tokenizer()).map_err(tokenizer_error)?;
        let mut counts = BTreeMap::new();
        for text in texts {
            let mut cleaned = text.to_string();
            for token in SPECIAL_TOKENS.iter().chain(TAG_TOKENS.iter()) {
                cleaned = cleaned.replace(token, "\n");
            }
            let mut split = PreTokenizedString::from(cleaned.as_str());
            pre.pre_tokenize(&mut split).map_err(tokenizer_error)?;
            for (word, _, _) in split.get_splits(OffsetReferential::Original, OffsetType::Byte) {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// The `tokenizer.json` of a tokenizer for `texts`.
    pub fn build<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Result<Tokenizer> {
        let added = SPECIAL_TOKENS.len() + TAG_TOKENS.len();
        if self.max_vocab < 256 + added {
            return Err(TorchError::Invalid(format!(
                "a byte-level vocabulary needs at least {} entries, `max_vocab` is {}",
                256 + added,
                self.max_vocab
            )));
        }
        let budget = self.max_vocab - 256 - added;
        let counts = self.count_words(texts)?;
        let mut words: Vec<(&String, u64)> = counts
            .iter()
            .filter(|(word, &count)| count >= self.min_count && word.chars().count() > 1)
            .map(|(word, &count)| (word, count))
            .collect();
        // Most frequent first; ties by the word itself, so the result is deterministic.
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));

        let symbols = byte_symbols();
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        let mut known: HashMap<String, usize> = vocab
            .iter()
            .enumerate()
            .map(|(id, s)| (s.clone(), id))
            .collect();
        let mut ranks: HashMap<(String, String), usize> = HashMap::new();
        let mut merges: Vec<(String, String)> = Vec::new();
        'words: for (word, _) in words {
            // Merges that assemble the word from what earlier merges already make of it;
            // being ranked after them, they cannot break earlier words apart.
            let mut parts = apply_merges(word, &ranks).into_iter();
            let Some(mut left) = parts.next() else {
                continue;
            };
            for right in parts {
                let merged = format!("{left}{right}");
                if !known.contains_key(&merged) {
                    if merges.len() >= budget {
                        break 'words;
                    }
                    known.insert(merged.clone(), vocab.len());
                    vocab.push(merged.clone());
                }
                let pair = (left, right);
                if !ranks.contains_key(&pair) {
                    ranks.insert(pair.clone(), merges.len());
                    merges.push(pair);
                }
                left = merged;
            }
        }

        let vocab_json: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), serde_json::json!(id)))
            .collect();
        let added_tokens: Vec<serde_json::Value> = SPECIAL_TOKENS
            .iter()
            .map(|t| (t, true))
            .chain(TAG_TOKENS.iter().map(|t| (t, false)))
            .enumerate()
            .map(|(offset, (content, special))| {
                serde_json::json!({
                    "id": vocab.len() + offset,
                    "content": content,
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": false,
                    "normalized": false,
                    "special": special,
                })
            })
            .collect();
        let byte_level = serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false
        });
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": qwen2_pre_tokenizer(),
            "post_processor": byte_level,
            "decoder": byte_level,
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab_json,
                "merges": merges.iter().map(|(a, b)| serde_json::json!([a, b])).collect::<Vec<_>>(),
            }
        });
        Tokenizer::from_json(&json.to_string())
    }
}

/// Writes a tokenizer's `tokenizer.json` into `dir`.
pub fn save(tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let mut text = tokenizer.to_json()?;
    text.push('\n');
    std::fs::write(&path, text).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_are_distinct_and_printable_where_gpt2_puts_them() {
        let symbols = byte_symbols();
        let distinct: std::collections::BTreeSet<char> = symbols.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(symbols[b'A' as usize], 'A');
        assert_eq!(symbols[b' ' as usize], 'Ġ');
        assert_eq!(symbols[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn tiny_tokenizer_round_trips_any_text_and_knows_its_words() {
        let corpus = [
            "<|im_start|>user\n(1) A is True\n(2) B is False<|im_end|>",
            "A is True and B is False, so C is True.",
            "A is True",
        ];
        let tokenizer = TinyTokenizerBuilder::default().build(corpus).unwrap();
        // Frequent words are one token each: " is", " True"; digits are single, as in Qwen.
        let ids = tokenizer.encode("A is True").unwrap();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(tokenizer.encode("12").unwrap().len(), 2);
        for token in SPECIAL_TOKENS.iter().chain(TAG_TOKENS.iter()) {
            let id = tokenizer.token_id(token).unwrap();
            assert_eq!(tokenizer.encode(token).unwrap(), [id]);
        }
        // Anything at all round-trips, including text never seen and the tags.
        let text =
            "<think>Zebra ¬(A ∧ B) → 12345</think>\n<answer>\n(1) A is True\n</answer><|im_end|>";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        // And it is the same tokenizer after a trip through its JSON.
        let again = Tokenizer::from_json(&tokenizer.to_json().unwrap()).unwrap();
        assert_eq!(again.encode(text).unwrap(), ids);
    }

    #[test]
    fn building_is_deterministic_and_respects_the_vocabulary_cap() {
        let corpus: Vec<String> = (0..200)
            .map(|i| format!("word{i} word{i} common common"))
            .collect();
        let builder = TinyTokenizerBuilder {
            max_vocab: 300,
            min_count: 2,
        };
        let a = builder.build(corpus.iter().map(String::as_str)).unwrap();
        let b = builder.build(corpus.iter().map(String::as_str)).unwrap();
        assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
        assert!(a.vocab_size() <= 300, "{}", a.vocab_size());
        assert_eq!(a.encode(" common").unwrap().len(), 1);
    }
}
