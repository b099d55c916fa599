//! Payloads of the `product.*` subjects.

use serde::{Deserialize, Serialize};

/// A product as the product service stores it; also the payload of `product.cmd.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Client-chosen id, unique.
    pub id: i32,
    /// Non-empty.
    pub name: String,
    /// Non-empty.
    pub description: String,
    /// Finite and `>= 0`.
    pub price: f64,
    /// Units in stock, `>= 0`.
    pub quantity: i32,
}

/// Payload of `product.cmd.update`: the fields that are `Some` replace the stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateProduct {
    /// The product to update.
    pub id: i32,
    /// New name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New price, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// New stock level, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i32>,
}

/// Payload of `product.cmd.delete`: deleted only if name, price and quantity match the stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteProduct {
    /// The product to delete.
    pub id: i32,
    /// Must equal the stored name.
    pub name: String,
    /// Must equal the stored price.
    pub price: f64,
    /// Must equal the stored quantity.
    pub quantity: i32,
}

/// Payload of `product.query.get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetProduct {
    /// The product to read.
    pub id: i32,
}

/// Reply to every `product.cmd.*` command and `product.query.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProductReply {
    /// The product as stored after the command (create, update, get).
    Ok {
        /// The stored record.
        product: Product,
    },
    /// The product was deleted.
    Deleted,
    /// No such product, or (for delete) the given fields did not match.
    NotFound,
    /// A product with this id already exists (create).
    Conflict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_reply_carries_the_record_under_its_name() {
        let reply = ProductReply::Ok {
            product: Product {
                id: 2,
                name: "n".into(),
                description: "d".into(),
                price: 3.5,
                quantity: 9,
            },
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"outcome":"ok","product":{"id":2,"name":"n","description":"d","price":3.5,"quantity":9}}"#
        );
    }
}
