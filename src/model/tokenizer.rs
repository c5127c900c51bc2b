//! The text encoder's tokenizer: bert-base-uncased WordPiece, truncated and
//! padded to 77 tokens, as the original `BERTTokenizer` (a Hugging Face
//! `BertTokenizerFast`) gives them.
//!
//! The vocabulary is compiled into the binary so the tokenizer needs no files.

use thiserror::Error;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

/// Sequence length of the text condition: every caption becomes this many tokens.
pub const MAX_TOKENS: usize = 77;

const VOCAB: &str = include_str!("../../assets/bert-base-uncased-vocab.txt");
const PAD: &str = "[PAD]";
const UNK: &str = "[UNK]";
const CLS: &str = "[CLS]";
const SEP: &str = "[SEP]";

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("the built-in BERT vocabulary lacks the special token {0}; the binary is damaged, reinstall it")]
    MissingToken(&'static str),
    #[error("cannot build the BERT tokenizer: {0}")]
    Build(String),
    #[error("cannot tokenise the caption {text:?}: {reason}")]
    Encode { text: String, reason: String },
}

/// A caption as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Exactly [`MAX_TOKENS`] ids: [CLS] caption [SEP] then [PAD] (id 0).
    pub ids: Vec<u32>,
    /// Whether the caption was cut to fit (the model then never sees its end).
    pub truncated: bool,
    /// Tokens the caption needs, [CLS] and [SEP] included, before truncation.
    pub count: usize,
}

/// bert-base-uncased WordPiece: lower-case, strip accents, split on
/// whitespace and punctuation, then greedy longest-match sub-words.
pub struct BertTokenizer {
    tokenizer: Tokenizer,
    sep_id: u32,
    pad_id: u32,
}

impl BertTokenizer {
    /// The tokenizer over the embedded bert-base-uncased vocabulary.
    pub fn new() -> Result<Self, TokenizerError> {
        let vocab = WordPiece::read_bytes(VOCAB.as_bytes()).map_err(|e| TokenizerError::Build(e.to_string()))?;
        let id_of = |token: &'static str| vocab.get(token).copied().ok_or(TokenizerError::MissingToken(token));
        let (pad_id, cls_id, sep_id) = (id_of(PAD)?, id_of(CLS)?, id_of(SEP)?);
        id_of(UNK)?;
        let wordpiece = WordPiece::builder()
            .vocab(vocab)
            .unk_token(UNK.to_string())
            .continuing_subword_prefix("##".to_string())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(wordpiece);
        // clean text, Chinese characters split, accents stripped, lower-cased.
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(true, true, Some(true), true)))
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_post_processor(Some(BertProcessing::new((SEP.into(), sep_id), (CLS.into(), cls_id))));
        Ok(Self { tokenizer, sep_id, pad_id })
    }

    /// Tokenises one caption to exactly [`MAX_TOKENS`] ids.
    ///
    /// Truncation keeps [CLS], the first 75 caption tokens and [SEP], which is
    /// what the original's `truncation=True, max_length=77` keeps.
    pub fn encode(&self, text: &str) -> Result<Tokens, TokenizerError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode { text: text.to_string(), reason: e.to_string() })?;
        let mut ids = encoding.get_ids().to_vec();
        let count = ids.len();
        let truncated = count > MAX_TOKENS;
        if truncated {
            ids.truncate(MAX_TOKENS - 1);
            ids.push(self.sep_id);
        }
        ids.resize(MAX_TOKENS, self.pad_id);
        Ok(Tokens { ids, truncated, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_caption_is_wrapped_and_padded() {
        let tokens = BertTokenizer::new().unwrap().encode("This woman is in her forties.").unwrap();
        // Ids of bert-base-uncased: [CLS] this woman is in her forties . [SEP]
        assert_eq!(&tokens.ids[..10], &[101, 2023, 2450, 2003, 1999, 2014, 3481, 3111, 1012, 102]);
        assert!(tokens.ids[10..].iter().all(|&id| id == 0));
        assert_eq!((tokens.count, tokens.truncated), (10, false));
    }

    #[test]
    fn over_long_caption_truncates_to_77_ending_in_sep() {
        let text = "beard ".repeat(100);
        let tokens = BertTokenizer::new().unwrap().encode(&text).unwrap();
        assert_eq!(tokens.ids.len(), MAX_TOKENS);
        assert!(tokens.truncated);
        assert_eq!(tokens.count, 102);
        assert_eq!(tokens.ids[0], 101);
        assert_eq!(tokens.ids[MAX_TOKENS - 1], 102);
        assert!(tokens.ids[1..MAX_TOKENS - 1].iter().all(|&id| id == 10154));
    }

    #[test]
    fn exactly_full_caption_is_not_truncated() {
        let text = "beard ".repeat(MAX_TOKENS - 2);
        let tokens = BertTokenizer::new().unwrap().encode(&text).unwrap();
        assert_eq!((tokens.count, tokens.truncated), (MAX_TOKENS, false));
        assert_eq!(tokens.ids[MAX_TOKENS - 1], 102);
    }

    #[test]
    fn accents_and_case_are_folded() {
        let tokenizer = BertTokenizer::new().unwrap();
        assert_eq!(tokenizer.encode("Café BEARD").unwrap().ids, tokenizer.encode("cafe beard").unwrap().ids);
    }
}
