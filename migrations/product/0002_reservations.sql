-- One row per order that asked for stock: what it was told (reserved or rejected) and whether
-- it gave the stock back (released). Keyed by the order id, so a redelivered command finds the
-- row and repeats the same answer instead of taking stock twice.
create table reservations (
    order_id uuid primary key,
    product_id integer not null,
    quantity integer not null check (quantity > 0),
    state text not null check (state in ('reserved', 'rejected', 'released')),
    reason text check (reason in ('product_not_found', 'insufficient_stock')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index reservations_held on reservations (product_id) where state = 'reserved';
