-- Orders and where their sagas stand. `user_valid` and `stock` hold the two verdicts as they
-- arrive (null until then); the row is decided (confirmed or rejected) under its own row lock
-- by whichever verdict arrives second.
create table orders (
    id uuid primary key,
    user_id integer not null,
    product_id integer not null,
    quantity integer not null check (quantity >= 1),
    state text not null default 'pending' check (state in ('pending', 'confirmed', 'rejected')),
    reason text check (reason in ('user_not_found', 'product_not_found', 'insufficient_stock')),
    user_valid boolean,
    stock text check (stock in ('reserved', 'product_not_found', 'insufficient_stock', 'released')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    check ((state = 'rejected') = (reason is not null))
);

-- Purchase history: a user's confirmed orders, answered from the index alone.
create index orders_confirmed_by_user on orders (user_id, product_id) include (quantity) where state = 'confirmed';
-- Orders still waiting, oldest first: what a deadline sweeper looks at.
create index orders_pending on orders (updated_at) where state = 'pending';
