-- Products, keyed by the client-chosen id. `quantity >= 0` is what makes overselling impossible:
-- a decrement that would go below zero fails instead of being applied.
create table products (
    id integer primary key,
    name text not null check (name <> ''),
    description text not null check (description <> ''),
    price double precision not null check (price >= 0 and price < 'Infinity'),
    quantity integer not null check (quantity >= 0)
);
