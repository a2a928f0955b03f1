//! The OpenAI wire format as clients speak it: the chat request we accept and the error envelope we
//! answer with. No cache or provider logic lives here.

pub mod chat;
pub mod envelope;
