//! The stock ledger of one batch of reserve and release requests: decides each request in the
//! order they came, against the stock of the products locked for the batch and the answers
//! already recorded, exactly as if they had been handled one by one. `nats` loads it from the
//! database and writes back what it changed, in one transaction.

use std::collections::HashMap;

use shared::saga::{RejectReason, StockOutcome, StockRequest};
use uuid::Uuid;

/// What a reservation row says of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The units are held for the order.
    Reserved,
    /// The order was refused, for this reason.
    Rejected(RejectReason),
    /// What the order held was given back, or it was released before it took anything.
    Released,
}

impl Recorded {
    /// The answer a request for this order gets.
    pub fn answer(self) -> (StockOutcome, Option<RejectReason>) {
        match self {
            Self::Reserved => (StockOutcome::Reserved, None),
            Self::Rejected(reason) => (StockOutcome::Rejected, Some(reason)),
            Self::Released => (StockOutcome::Released, None),
        }
    }

    /// The row's `state`.
    pub fn state(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Rejected(_) => "rejected",
            Self::Released => "released",
        }
    }

    /// The row's `reason`.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Rejected(reason) => Some(reason.as_str()),
            _ => None,
        }
    }
}

/// A reservation row as stored: the order's product and units, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub product_id: i32,
    pub quantity: i32,
    pub recorded: Recorded,
}

/// The batch's view of stock and reservations, and what it changed.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Units in stock of each product that exists (locked for the batch).
    stock: HashMap<i32, i32>,
    /// Products whose stock this batch changed.
    touched: Vec<i32>,
    /// Every order's reservation, stored or made by this batch.
    reservations: HashMap<Uuid, Reservation>,
    /// The orders whose rows this batch creates, in order.
    created: Vec<Uuid>,
    /// Stored rows this batch turned from reserved to released.
    released: Vec<Uuid>,
}

impl Ledger {
    /// A ledger over `stock` (product id, units: the products that exist) and the reservations
    /// already stored for the orders of the batch.
    pub fn new(
        stock: impl IntoIterator<Item = (i32, i32)>,
        stored: impl IntoIterator<Item = (Uuid, Reservation)>,
    ) -> Self {
        Self {
            stock: stock.into_iter().collect(),
            reservations: stored.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Takes the units for the order if they are there. An order that already has an answer
    /// gets it again and takes nothing (a redelivery, or a reserve after its release).
    pub fn reserve(&mut self, request: &StockRequest) -> (StockOutcome, Option<RejectReason>) {
        if let Some(reservation) = self.reservations.get(&request.order_id) {
            return reservation.recorded.answer();
        }
        let recorded = match self.stock.get_mut(&request.product_id) {
            None => Recorded::Rejected(RejectReason::ProductNotFound),
            Some(units) if *units < request.quantity => {
                Recorded::Rejected(RejectReason::InsufficientStock)
            }
            Some(units) => {
                *units -= request.quantity;
                self.touched.push(request.product_id);
                Recorded::Reserved
            }
        };
        self.create(request, recorded);
        recorded.answer()
    }

    /// Gives back what the order holds. An order with no answer yet is marked released, so
    /// that a reserve arriving after its release takes nothing. A stock restocked meanwhile to
    /// near the most a product can hold (`i32::MAX` units) stays at that most.
    pub fn release(&mut self, request: &StockRequest) -> StockOutcome {
        match self.reservations.get_mut(&request.order_id) {
            None => self.create(request, Recorded::Released),
            Some(reservation) if reservation.recorded == Recorded::Reserved => {
                reservation.recorded = Recorded::Released;
                let (product_id, quantity) = (reservation.product_id, reservation.quantity);
                // A product deleted meanwhile has no stock to return to.
                if let Some(units) = self.stock.get_mut(&product_id) {
                    *units = units.saturating_add(quantity);
                    self.touched.push(product_id);
                }
                if !self.created.contains(&request.order_id) {
                    self.released.push(request.order_id);
                }
            }
            Some(_) => {}
        }
        StockOutcome::Released
    }

    fn create(&mut self, request: &StockRequest, recorded: Recorded) {
        let reservation = Reservation {
            product_id: request.product_id,
            quantity: request.quantity,
            recorded,
        };
        self.reservations.insert(request.order_id, reservation);
        self.created.push(request.order_id);
    }

    /// The rows to insert: (order, reservation as it ends the batch).
    pub fn created(&self) -> Vec<(Uuid, Reservation)> {
        self.created
            .iter()
            .filter_map(|id| Some((*id, *self.reservations.get(id)?)))
            .collect()
    }

    /// The stored rows to mark released.
    pub fn released(&self) -> &[Uuid] {
        &self.released
    }

    /// The products whose stock changed, with their new stock, by id.
    pub fn changed_stock(&self) -> Vec<(i32, i32)> {
        let mut ids = self.touched.clone();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| Some((id, *self.stock.get(&id)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(order: u128, product_id: i32, quantity: i32) -> StockRequest {
        StockRequest {
            order_id: Uuid::from_u128(order),
            product_id,
            quantity,
        }
    }

    const RESERVED: (StockOutcome, Option<RejectReason>) = (StockOutcome::Reserved, None);
    const SHORT: (StockOutcome, Option<RejectReason>) = (
        StockOutcome::Rejected,
        Some(RejectReason::InsufficientStock),
    );

    #[test]
    fn orders_on_one_product_are_served_in_turn_until_the_stock_runs_out() {
        let mut ledger = Ledger::new([(7, 5)], []);
        let answers: Vec<_> = [2, 2, 2, 1]
            .iter()
            .enumerate()
            .map(|(n, quantity)| ledger.reserve(&request(n as u128, 7, *quantity)))
            .collect();
        assert_eq!(answers, [RESERVED, RESERVED, SHORT, RESERVED]);
        assert_eq!(ledger.changed_stock(), [(7, 0)]);
        assert_eq!(ledger.created().len(), 4);
    }

    #[test]
    fn an_order_too_big_for_the_stock_leaves_it_to_the_smaller_orders_after_it() {
        let mut ledger = Ledger::new([(7, 3)], []);
        assert_eq!(ledger.reserve(&request(1, 7, 4)), SHORT);
        assert_eq!(ledger.reserve(&request(2, 7, 3)), RESERVED);
        assert_eq!(ledger.changed_stock(), [(7, 0)]);
    }

    #[test]
    fn an_unknown_product_is_refused_and_a_repeat_gets_the_first_answer() {
        let mut ledger = Ledger::new([(7, 1)], []);
        let unknown = (StockOutcome::Rejected, Some(RejectReason::ProductNotFound));
        assert_eq!(ledger.reserve(&request(1, 8, 1)), unknown);
        assert_eq!(ledger.reserve(&request(2, 7, 1)), RESERVED);
        assert_eq!(ledger.reserve(&request(2, 7, 1)), RESERVED);
        assert_eq!(ledger.reserve(&request(1, 8, 1)), unknown);
        assert_eq!(ledger.created().len(), 2);
        assert_eq!(ledger.changed_stock(), [(7, 0)]);
    }

    #[test]
    fn a_stored_answer_stands_and_takes_nothing() {
        let stored = Reservation {
            product_id: 7,
            quantity: 2,
            recorded: Recorded::Reserved,
        };
        let mut ledger = Ledger::new([(7, 5)], [(Uuid::from_u128(1), stored)]);
        assert_eq!(ledger.reserve(&request(1, 7, 2)), RESERVED);
        assert!(ledger.created().is_empty());
        assert!(ledger.changed_stock().is_empty());
    }

    #[test]
    fn a_release_gives_back_what_was_held_once() {
        let stored = Reservation {
            product_id: 7,
            quantity: 2,
            recorded: Recorded::Reserved,
        };
        let mut ledger = Ledger::new([(7, 5)], [(Uuid::from_u128(1), stored)]);
        assert_eq!(ledger.release(&request(1, 7, 2)), StockOutcome::Released);
        assert_eq!(ledger.release(&request(1, 7, 2)), StockOutcome::Released);
        assert_eq!(ledger.changed_stock(), [(7, 7)]);
        assert_eq!(ledger.released(), [Uuid::from_u128(1)]);
    }

    #[test]
    fn a_release_onto_a_stock_at_the_most_it_can_hold_leaves_it_there() {
        let stored = Reservation {
            product_id: 7,
            quantity: 2,
            recorded: Recorded::Reserved,
        };
        let mut ledger = Ledger::new([(7, i32::MAX - 1)], [(Uuid::from_u128(1), stored)]);
        assert_eq!(ledger.release(&request(1, 7, 2)), StockOutcome::Released);
        assert_eq!(ledger.changed_stock(), [(7, i32::MAX)]);
        assert_eq!(ledger.released(), [Uuid::from_u128(1)]);
    }

    #[test]
    fn a_release_before_its_reserve_makes_the_reserve_take_nothing() {
        let mut ledger = Ledger::new([(7, 5)], []);
        ledger.release(&request(1, 7, 2));
        assert_eq!(
            ledger.reserve(&request(1, 7, 2)),
            (StockOutcome::Released, None)
        );
        assert!(ledger.changed_stock().is_empty());
        let created = ledger.created();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].1.recorded, Recorded::Released);
    }

    #[test]
    fn a_reserve_released_in_the_same_batch_is_created_released_and_returns_its_units() {
        let mut ledger = Ledger::new([(7, 5)], []);
        assert_eq!(ledger.reserve(&request(1, 7, 2)), RESERVED);
        ledger.release(&request(1, 7, 2));
        assert_eq!(ledger.changed_stock(), [(7, 5)]);
        assert_eq!(ledger.created()[0].1.recorded, Recorded::Released);
        assert!(ledger.released().is_empty());
    }
}
