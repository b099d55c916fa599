-- The commands applied, by command id, with what each answered. A command sent again (its reply
-- was lost, or the replica it reached was stopping) finds its id here: it repeats that answer
-- instead of acting twice. Rows older than a few minutes are pruned; repeats come within seconds.
create table command_log (
    id uuid primary key,
    outcome text not null check (outcome in ('ok', 'conflict', 'not_found', 'deleted')),
    at timestamptz not null default now()
);

create index command_log_at on command_log (at);
