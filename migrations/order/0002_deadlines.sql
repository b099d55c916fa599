-- An order that outlives its final deadline is rejected without one of the contract's reasons
-- (API.md allows a null reason): the saga could not decide it in time.
alter table orders drop constraint orders_check;
alter table orders add constraint orders_reason_only_when_rejected check (state = 'rejected' or reason is null);
-- Rejected orders whose stock has not been confirmed released yet: what the sweeper re-drives.
create index orders_unreleased on orders (updated_at) where state = 'rejected' and (stock is null or stock = 'reserved');
