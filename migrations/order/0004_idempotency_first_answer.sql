-- What the first request of an Idempotency-Key answered, so that repeats answer the same:
-- `accepted` (202, the order still pending then; repeats answer 202 too, and the client follows
-- Location) or `decided` (its outcome, which never changes). Null until a request answers with
-- one of those; a 5xx is not recorded, so a repeat after one places the order as it should.
alter table idempotency_keys
    add column first_answer text check (first_answer in ('accepted', 'decided'));
