//! User stacks: unwinding a blocked thread from its saved registers and stack bytes,
//! then naming each frame.

pub mod symbolize;
pub mod unwind;
