//! The stress tool against real servers: a small one that stalls on purpose, and the whole stack.

mod against_stack;
mod open_loop;
