-- Idempotency-Key on POST /order: the first request with a key claims it here (the primary key
-- decides between concurrent requests, no lookup first) together with the order id it
-- allocated and what it ordered. A repeat finds the row: the same order is answered, or placed
-- again under the same id if its first placement never reached the saga; a different order
-- under the same key is refused (422). Rows older than a day are pruned.
create table idempotency_keys (
    key text primary key check (length(key) between 1 and 255),
    order_id uuid not null unique,
    user_id integer not null,
    product_id integer not null,
    quantity integer not null check (quantity >= 1),
    created_at timestamptz not null default now()
);

create index idempotency_keys_created_at on idempotency_keys (created_at);
