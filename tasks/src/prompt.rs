//! Prompt rendering: Qwen ChatML, as the paper (arXiv 2505.10554) describes.
//!
//! The system message holds the shared system text and the family's one-line task
//! instruction; the user message is the puzzle; the assistant turn is opened and already
//! contains `<think>`, so the model continues inside the think block.

use serde::{Deserialize, Serialize};

/// The shared system text (Logic-RL's, which the paper's code uses).
pub const SYSTEM: &str = "You are a helpful assistant. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>.";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// The system and user messages of an instance (the JSONL records' `messages`; the verl
/// export holds the whole [`render`]ed prompt in one message instead, see [`crate::verl`]).
pub fn messages(instruction: &str, puzzle: &str) -> Vec<Message> {
    vec![
        Message {
            role: "system".into(),
            content: format!("{SYSTEM}\n{instruction}"),
        },
        Message {
            role: "user".into(),
            content: puzzle.to_string(),
        },
    ]
}

/// The full ChatML prompt, ending in the opened assistant turn with `<think>`.
pub fn render(instruction: &str, puzzle: &str) -> String {
    let mut text = String::new();
    for message in messages(instruction, puzzle) {
        text.push_str("<|im_start|>");
        text.push_str(&message.role);
        text.push('\n');
        text.push_str(&message.content);
        text.push_str("<|im_end|>\n");
    }
    text.push_str("<|im_start|>assistant\n<think>");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml_with_an_open_think() {
        let prompt = render("Give the number.", "1, 2, ?");
        assert!(prompt.starts_with("<|im_start|>system\nYou are a helpful assistant."));
        assert!(prompt.contains("</answer> tags, respectively"));
        assert!(
            prompt.contains("\nGive the number.<|im_end|>\n<|im_start|>user\n1, 2, ?<|im_end|>\n")
        );
        assert!(prompt.ends_with("<|im_start|>assistant\n<think>"));
        let assistant = prompt.rsplit("<|im_start|>").next().unwrap();
        assert_eq!(assistant, "assistant\n<think>");
    }
}
