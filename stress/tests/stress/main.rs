//! The stress tool against real servers: a small one that stalls on purpose, and the whole stack.

mod against_stack;
mod chaos;
mod open_loop;
