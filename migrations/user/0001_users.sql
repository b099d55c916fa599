-- Users, keyed by the client-chosen id. The checks repeat the contract's rules so that a
-- command arriving over NATS from anywhere cannot store what the HTTP layer would refuse.
create table users (
    id integer primary key,
    username text not null check (username <> ''),
    email text not null check (email <> ''),
    password_sha256 text not null check (password_sha256 ~ '^[0-9A-F]{64}$')
);
