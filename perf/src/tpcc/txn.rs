//! The five TPC-C transactions (clauses 2.4 to 2.8): their inputs, drawn as
//! the specification says, and their SQL, run on one connection as one
//! database transaction each. Input generation is pure; [`execute`] does
//! the I/O.

use super::random::{self, DISTRICTS_PER_WAREHOUSE, ITEMS, NuRandC};
use mysql::prelude::Queryable;
use mysql::{Conn, Row};
use rand::Rng;
use thiserror::Error;

/// A transaction type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    NewOrder,
    Payment,
    OrderStatus,
    Delivery,
    StockLevel,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::NewOrder, Kind::Payment, Kind::OrderStatus, Kind::Delivery, Kind::StockLevel];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NewOrder => "new-order",
            Kind::Payment => "payment",
            Kind::OrderStatus => "order-status",
            Kind::Delivery => "delivery",
            Kind::StockLevel => "stock-level",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Cards of this type in a deck of 100: 45 % new-order, 43 % payment,
    /// 4 % each for the others (the minimum mix of clause 5.2.3, new-order
    /// taking the rest).
    pub fn cards(self) -> usize {
        match self {
            Kind::NewOrder => 45,
            Kind::Payment => 43,
            _ => 4,
        }
    }
}

/// A shuffled deck of 100 transaction types, redealt when empty (clause
/// 5.2.4.2's "deck" selection): the mix holds exactly over every 100.
#[derive(Debug, Clone)]
pub struct Deck {
    cards: Vec<Kind>,
    next: usize,
}

impl Default for Deck {
    fn default() -> Self {
        let cards = Kind::ALL.iter().flat_map(|k| std::iter::repeat_n(*k, k.cards())).collect();
        Deck { cards, next: usize::MAX }
    }
}

impl Deck {
    pub fn deal(&mut self, rng: &mut impl Rng) -> Kind {
        if self.next >= self.cards.len() {
            for i in (1..self.cards.len()).rev() {
                let j = rng.random_range(0..=i);
                self.cards.swap(i, j);
            }
            self.next = 0;
        }
        self.next += 1;
        self.cards[self.next - 1]
    }
}

/// How a customer is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerRef {
    Id(u32),
    LastName(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub i_id: u32,
    pub supply_w_id: u32,
    pub quantity: u32,
}

/// Inputs of one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    NewOrder { w_id: u32, d_id: u32, c_id: u32, items: Vec<OrderItem> },
    Payment { w_id: u32, d_id: u32, c_w_id: u32, c_d_id: u32, customer: CustomerRef, amount: f64 },
    OrderStatus { w_id: u32, d_id: u32, customer: CustomerRef },
    Delivery { w_id: u32, carrier_id: u32 },
    StockLevel { w_id: u32, d_id: u32, threshold: u32 },
}

impl Input {
    pub fn kind(&self) -> Kind {
        match self {
            Input::NewOrder { .. } => Kind::NewOrder,
            Input::Payment { .. } => Kind::Payment,
            Input::OrderStatus { .. } => Kind::OrderStatus,
            Input::Delivery { .. } => Kind::Delivery,
            Input::StockLevel { .. } => Kind::StockLevel,
        }
    }

    /// Draw the inputs of a `kind` transaction for a terminal whose home is
    /// warehouse `w_id` and district `home_d_id` (used by stock-level).
    pub fn draw(
        kind: Kind,
        w_id: u32,
        home_d_id: u32,
        warehouses: u32,
        c: &NuRandC,
        rng: &mut impl Rng,
    ) -> Input {
        let district = |rng: &mut _| random_in(rng, 1, DISTRICTS_PER_WAREHOUSE);
        let other_warehouse = |rng: &mut _| {
            if warehouses <= 1 {
                return w_id;
            }
            let o = random_in(rng, 1, warehouses - 1);
            if o >= w_id { o + 1 } else { o }
        };
        let customer = |rng: &mut _| {
            if random_in(rng, 1, 100) <= 60 {
                CustomerRef::LastName(random::last_name(random::last_name_number(rng, c.c_last)))
            } else {
                CustomerRef::Id(random::customer_id(rng, c))
            }
        };
        match kind {
            Kind::NewOrder => {
                let d_id = district(rng);
                let c_id = random::customer_id(rng, c);
                let n = random_in(rng, 5, 15);
                // 1 % of new-orders name an unused item last and roll back (2.4.1.4).
                let rollback = random_in(rng, 1, 100) == 1;
                let items = (0..n)
                    .map(|i| {
                        let i_id = if rollback && i == n - 1 { ITEMS + 1 } else { random::item_id(rng, c) };
                        let supply_w_id =
                            if random_in(rng, 1, 100) == 1 { other_warehouse(rng) } else { w_id };
                        OrderItem { i_id, supply_w_id, quantity: random_in(rng, 1, 10) }
                    })
                    .collect();
                Input::NewOrder { w_id, d_id, c_id, items }
            }
            Kind::Payment => {
                let d_id = district(rng);
                let (c_w_id, c_d_id) = if random_in(rng, 1, 100) <= 85 {
                    (w_id, d_id)
                } else {
                    (other_warehouse(rng), district(rng))
                };
                let amount = random_in(rng, 100, 500_000) as f64 / 100.0;
                Input::Payment { w_id, d_id, c_w_id, c_d_id, customer: customer(rng), amount }
            }
            Kind::OrderStatus => Input::OrderStatus { w_id, d_id: district(rng), customer: customer(rng) },
            Kind::Delivery => Input::Delivery { w_id, carrier_id: random_in(rng, 1, 10) },
            Kind::StockLevel => {
                Input::StockLevel { w_id, d_id: home_d_id, threshold: random_in(rng, 10, 20) }
            }
        }
    }
}

fn random_in(rng: &mut impl Rng, lo: u32, hi: u32) -> u32 {
    rng.random_range(lo..=hi)
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// A new-order with an unused item, rolled back as the specification asks.
    RolledBack,
}

/// Why a transaction failed.
#[derive(Debug, Error)]
pub enum TxError {
    #[error("{kind}: {source}")]
    Sql { kind: &'static str, source: mysql::Error },
    #[error("{kind}: {what} not found")]
    Missing { kind: &'static str, what: &'static str },
}

impl TxError {
    /// A deadlock or lock wait timeout: the transaction may be run again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TxError::Sql { source: mysql::Error::MySqlError(e), .. } if e.code == 1213 || e.code == 1205)
    }

    /// The server went away (not a problem of this transaction).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, TxError::Sql { source: mysql::Error::IoError(_) | mysql::Error::CodecError(_), .. })
    }
}

/// Statements that depend on the district: the stock row's `s_dist_XX` column.
#[derive(Debug, Clone)]
pub struct Statements {
    stock_select: Vec<String>,
}

impl Default for Statements {
    fn default() -> Self {
        Statements {
            stock_select: (1..=DISTRICTS_PER_WAREHOUSE)
                .map(|d| {
                    format!(
                        "SELECT s_quantity, s_data, s_dist_{d:02} FROM stock WHERE s_i_id = ? AND s_w_id = ? FOR UPDATE"
                    )
                })
                .collect(),
        }
    }
}

/// Run one transaction. On error it has been rolled back.
pub fn execute(conn: &mut Conn, st: &Statements, input: &Input) -> Result<Outcome, TxError> {
    let kind = input.kind().name();
    let sql = |source| TxError::Sql { kind, source };
    conn.query_drop("START TRANSACTION").map_err(sql)?;
    let r = match input {
        Input::NewOrder { w_id, d_id, c_id, items } => new_order(conn, st, *w_id, *d_id, *c_id, items),
        Input::Payment { w_id, d_id, c_w_id, c_d_id, customer, amount } => {
            payment(conn, *w_id, *d_id, *c_w_id, *c_d_id, customer, *amount)
        }
        Input::OrderStatus { w_id, d_id, customer } => order_status(conn, *w_id, *d_id, customer),
        Input::Delivery { w_id, carrier_id } => delivery(conn, *w_id, *carrier_id),
        Input::StockLevel { w_id, d_id, threshold } => stock_level(conn, *w_id, *d_id, *threshold),
    };
    let r = r.map_err(|e| match e {
        Step::Sql(source) => TxError::Sql { kind, source },
        Step::Missing(what) => TxError::Missing { kind, what },
    });
    match r {
        Ok(Outcome::Committed) => {
            conn.query_drop("COMMIT").map_err(sql)?;
            Ok(Outcome::Committed)
        }
        Ok(Outcome::RolledBack) => {
            conn.query_drop("ROLLBACK").map_err(sql)?;
            Ok(Outcome::RolledBack)
        }
        Err(e) => {
            // The server rolls a deadlock victim back itself; this ends the
            // transaction in every other case. Its own failure changes nothing.
            let _ = conn.query_drop("ROLLBACK");
            Err(e)
        }
    }
}

enum Step {
    Sql(mysql::Error),
    Missing(&'static str),
}

impl From<mysql::Error> for Step {
    fn from(e: mysql::Error) -> Step {
        Step::Sql(e)
    }
}

fn found<T>(v: Option<T>, what: &'static str) -> Result<T, Step> {
    v.ok_or(Step::Missing(what))
}

fn new_order(
    conn: &mut Conn,
    st: &Statements,
    w_id: u32,
    d_id: u32,
    c_id: u32,
    items: &[OrderItem],
) -> Result<Outcome, Step> {
    let cust: Option<(f64, String, String, f64)> = conn.exec_first(
        "SELECT c_discount, c_last, c_credit, w_tax FROM customer, warehouse \
         WHERE w_id = ? AND c_w_id = w_id AND c_d_id = ? AND c_id = ?",
        (w_id, d_id, c_id),
    )?;
    let (discount, _last, _credit, w_tax) = found(cust, "customer")?;
    let dist: Option<(u32, f64)> = conn.exec_first(
        "SELECT d_next_o_id, d_tax FROM district WHERE d_w_id = ? AND d_id = ? FOR UPDATE",
        (w_id, d_id),
    )?;
    let (o_id, d_tax) = found(dist, "district")?;
    conn.exec_drop(
        "UPDATE district SET d_next_o_id = ? WHERE d_w_id = ? AND d_id = ?",
        (o_id + 1, w_id, d_id),
    )?;
    let all_local = items.iter().all(|i| i.supply_w_id == w_id) as u32;
    conn.exec_drop(
        "INSERT INTO orders (o_id, o_d_id, o_w_id, o_c_id, o_entry_d, o_ol_cnt, o_all_local) \
         VALUES (?, ?, ?, ?, NOW(), ?, ?)",
        (o_id, d_id, w_id, c_id, items.len() as u32, all_local),
    )?;
    conn.exec_drop(
        "INSERT INTO new_orders (no_o_id, no_d_id, no_w_id) VALUES (?, ?, ?)",
        (o_id, d_id, w_id),
    )?;
    let mut total = 0.0;
    for (n, item) in items.iter().enumerate() {
        let it: Option<(f64, String, String)> =
            conn.exec_first("SELECT i_price, i_name, i_data FROM item WHERE i_id = ?", (item.i_id,))?;
        let Some((price, _name, _data)) = it else {
            return Ok(Outcome::RolledBack);
        };
        let stock: Option<(i32, String, String)> =
            conn.exec_first(st.stock_select[d_id as usize - 1].as_str(), (item.i_id, item.supply_w_id))?;
        let (s_quantity, _s_data, dist_info) = found(stock, "stock")?;
        let q = item.quantity as i32;
        let new_q = if s_quantity >= q + 10 { s_quantity - q } else { s_quantity - q + 91 };
        conn.exec_drop(
            "UPDATE stock SET s_quantity = ?, s_ytd = s_ytd + ?, s_order_cnt = s_order_cnt + 1, \
             s_remote_cnt = s_remote_cnt + ? WHERE s_i_id = ? AND s_w_id = ?",
            (new_q, item.quantity, (item.supply_w_id != w_id) as u32, item.i_id, item.supply_w_id),
        )?;
        let amount = item.quantity as f64 * price;
        total += amount;
        conn.exec_drop(
            "INSERT INTO order_line (ol_o_id, ol_d_id, ol_w_id, ol_number, ol_i_id, ol_supply_w_id, \
             ol_quantity, ol_amount, ol_dist_info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (o_id, d_id, w_id, n as u32 + 1, item.i_id, item.supply_w_id, item.quantity, amount, dist_info),
        )?;
    }
    // The total the terminal would display (2.4.2.2); computed, not stored.
    let _ = total * (1.0 - discount) * (1.0 + w_tax + d_tax);
    Ok(Outcome::Committed)
}

/// The customer id for a reference: by last name, the one in the middle
/// of those sorted by first name (2.5.2.2).
fn customer_id(conn: &mut Conn, w_id: u32, d_id: u32, c: &CustomerRef) -> Result<u32, Step> {
    match c {
        CustomerRef::Id(id) => Ok(*id),
        CustomerRef::LastName(last) => {
            let ids: Vec<u32> = conn.exec(
                "SELECT c_id FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_last = ? ORDER BY c_first",
                (w_id, d_id, last.as_str()),
            )?;
            found(ids.get(ids.len().saturating_sub(1) / 2).copied(), "customer by last name")
        }
    }
}

fn payment(
    conn: &mut Conn,
    w_id: u32,
    d_id: u32,
    c_w_id: u32,
    c_d_id: u32,
    customer: &CustomerRef,
    amount: f64,
) -> Result<Outcome, Step> {
    conn.exec_drop("UPDATE warehouse SET w_ytd = w_ytd + ? WHERE w_id = ?", (amount, w_id))?;
    let w: Option<Row> = conn.exec_first(
        "SELECT w_street_1, w_street_2, w_city, w_state, w_zip, w_name FROM warehouse WHERE w_id = ?",
        (w_id,),
    )?;
    let w_name: String = found(found(w, "warehouse")?.get(5), "w_name")?;
    conn.exec_drop(
        "UPDATE district SET d_ytd = d_ytd + ? WHERE d_w_id = ? AND d_id = ?",
        (amount, w_id, d_id),
    )?;
    let d: Option<Row> = conn.exec_first(
        "SELECT d_street_1, d_street_2, d_city, d_state, d_zip, d_name FROM district WHERE d_w_id = ? AND d_id = ?",
        (w_id, d_id),
    )?;
    let d_name: String = found(found(d, "district")?.get(5), "d_name")?;
    let c_id = customer_id(conn, c_w_id, c_d_id, customer)?;
    let c: Option<Row> = conn.exec_first(
        "SELECT c_first, c_middle, c_last, c_street_1, c_street_2, c_city, c_state, c_zip, c_phone, c_since, \
         c_credit, c_credit_lim, c_discount, c_balance FROM customer \
         WHERE c_w_id = ? AND c_d_id = ? AND c_id = ? FOR UPDATE",
        (c_w_id, c_d_id, c_id),
    )?;
    let credit: String = found(found(c, "customer")?.get(10), "c_credit")?;
    if credit == "BC" {
        let data: Option<String> = conn.exec_first(
            "SELECT c_data FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
            (c_w_id, c_d_id, c_id),
        )?;
        let mut new =
            format!("{c_id} {c_d_id} {c_w_id} {d_id} {w_id} {amount:.2} | {}", found(data, "c_data")?);
        new.truncate(500);
        conn.exec_drop(
            "UPDATE customer SET c_balance = c_balance - ?, c_ytd_payment = c_ytd_payment + ?, \
             c_payment_cnt = c_payment_cnt + 1, c_data = ? WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
            (amount, amount, new, c_w_id, c_d_id, c_id),
        )?;
    } else {
        conn.exec_drop(
            "UPDATE customer SET c_balance = c_balance - ?, c_ytd_payment = c_ytd_payment + ?, \
             c_payment_cnt = c_payment_cnt + 1 WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
            (amount, amount, c_w_id, c_d_id, c_id),
        )?;
    }
    conn.exec_drop(
        "INSERT INTO history (h_c_d_id, h_c_w_id, h_c_id, h_d_id, h_w_id, h_date, h_amount, h_data) \
         VALUES (?, ?, ?, ?, ?, NOW(), ?, ?)",
        (c_d_id, c_w_id, c_id, d_id, w_id, amount, format!("{w_name}    {d_name}")),
    )?;
    Ok(Outcome::Committed)
}

fn order_status(conn: &mut Conn, w_id: u32, d_id: u32, customer: &CustomerRef) -> Result<Outcome, Step> {
    let c_id = customer_id(conn, w_id, d_id, customer)?;
    let c: Option<Row> = conn.exec_first(
        "SELECT c_balance, c_first, c_middle, c_last FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
        (w_id, d_id, c_id),
    )?;
    found(c, "customer")?;
    let o: Option<Row> = conn.exec_first(
        "SELECT o_id, o_carrier_id, o_entry_d FROM orders WHERE o_w_id = ? AND o_d_id = ? AND o_c_id = ? \
         ORDER BY o_id DESC LIMIT 1",
        (w_id, d_id, c_id),
    )?;
    let o_id: u32 = found(found(o, "order")?.get(0), "o_id")?;
    let _lines: Vec<Row> = conn.exec(
        "SELECT ol_i_id, ol_supply_w_id, ol_quantity, ol_amount, ol_delivery_d FROM order_line \
         WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?",
        (w_id, d_id, o_id),
    )?;
    Ok(Outcome::Committed)
}

fn delivery(conn: &mut Conn, w_id: u32, carrier_id: u32) -> Result<Outcome, Step> {
    for d_id in 1..=DISTRICTS_PER_WAREHOUSE {
        let no: Option<u32> = conn.exec_first(
            "SELECT no_o_id FROM new_orders WHERE no_w_id = ? AND no_d_id = ? ORDER BY no_o_id LIMIT 1 FOR UPDATE",
            (w_id, d_id),
        )?;
        // No undelivered order in this district: skipped (2.7.4.2).
        let Some(o_id) = no else { continue };
        conn.exec_drop(
            "DELETE FROM new_orders WHERE no_w_id = ? AND no_d_id = ? AND no_o_id = ?",
            (w_id, d_id, o_id),
        )?;
        let c: Option<u32> = conn.exec_first(
            "SELECT o_c_id FROM orders WHERE o_w_id = ? AND o_d_id = ? AND o_id = ?",
            (w_id, d_id, o_id),
        )?;
        let c_id = found(c, "order")?;
        conn.exec_drop(
            "UPDATE orders SET o_carrier_id = ? WHERE o_w_id = ? AND o_d_id = ? AND o_id = ?",
            (carrier_id, w_id, d_id, o_id),
        )?;
        conn.exec_drop(
            "UPDATE order_line SET ol_delivery_d = NOW() WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?",
            (w_id, d_id, o_id),
        )?;
        let sum: Option<Option<f64>> = conn.exec_first(
            "SELECT SUM(ol_amount) FROM order_line WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?",
            (w_id, d_id, o_id),
        )?;
        conn.exec_drop(
            "UPDATE customer SET c_balance = c_balance + ?, c_delivery_cnt = c_delivery_cnt + 1 \
             WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
            (sum.flatten().unwrap_or(0.0), w_id, d_id, c_id),
        )?;
    }
    Ok(Outcome::Committed)
}

fn stock_level(conn: &mut Conn, w_id: u32, d_id: u32, threshold: u32) -> Result<Outcome, Step> {
    let next: Option<u32> =
        conn.exec_first("SELECT d_next_o_id FROM district WHERE d_w_id = ? AND d_id = ?", (w_id, d_id))?;
    let next = found(next, "district")?;
    let _low: Option<u64> = conn.exec_first(
        "SELECT COUNT(DISTINCT s_i_id) FROM order_line, stock WHERE ol_w_id = ? AND ol_d_id = ? \
         AND ol_o_id < ? AND ol_o_id >= ? AND s_w_id = ? AND s_i_id = ol_i_id AND s_quantity < ?",
        (w_id, d_id, next, next.saturating_sub(20), w_id, threshold),
    )?;
    Ok(Outcome::Committed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    #[test]
    fn the_deck_deals_the_standard_mix() {
        let mut rng = Pcg64::seed_from_u64(1);
        let mut deck = Deck::default();
        let mut counts = [0usize; 5];
        for _ in 0..1000 {
            counts[deck.deal(&mut rng).index()] += 1;
        }
        assert_eq!(counts, [450, 430, 40, 40, 40]);
    }

    #[test]
    fn inputs_follow_the_specification() {
        let mut rng = Pcg64::seed_from_u64(2);
        let c = NuRandC::random(&mut rng);
        let (mut rollbacks, mut remote_items, mut items) = (0, 0, 0);
        let (mut by_name, mut remote_pay) = (0, 0);
        let n = 20_000;
        for _ in 0..n {
            match Input::draw(Kind::NewOrder, 3, 4, 10, &c, &mut rng) {
                Input::NewOrder { w_id, d_id, c_id, items: it } => {
                    assert_eq!(w_id, 3);
                    assert!((1..=10).contains(&d_id) && (1..=3000).contains(&c_id));
                    assert!((5..=15).contains(&it.len()));
                    rollbacks += it.iter().filter(|i| i.i_id > ITEMS).count();
                    assert!(
                        it[..it.len() - 1].iter().all(|i| i.i_id <= ITEMS),
                        "only the last item is unused"
                    );
                    remote_items += it.iter().filter(|i| i.supply_w_id != 3).count();
                    assert!(
                        it.iter()
                            .all(|i| (1..=10).contains(&i.supply_w_id) && (1..=10).contains(&i.quantity))
                    );
                    items += it.len();
                }
                other => panic!("drew {other:?}"),
            }
            match Input::draw(Kind::Payment, 3, 4, 10, &c, &mut rng) {
                Input::Payment { c_w_id, customer, amount, .. } => {
                    by_name += matches!(customer, CustomerRef::LastName(_)) as usize;
                    remote_pay += (c_w_id != 3) as usize;
                    assert!((1.0..=5000.0).contains(&amount));
                }
                other => panic!("drew {other:?}"),
            }
        }
        let pct = |x: usize, of: usize| x as f64 * 100.0 / of as f64;
        assert!((0.7..1.3).contains(&pct(rollbacks, n)), "rollbacks {}", pct(rollbacks, n));
        assert!((0.8..1.2).contains(&pct(remote_items, items)), "remote items {}", pct(remote_items, items));
        assert!((58.0..62.0).contains(&pct(by_name, n)), "by name {}", pct(by_name, n));
        assert!((13.5..16.5).contains(&pct(remote_pay, n)), "remote payments {}", pct(remote_pay, n));
        // One warehouse: nothing is remote.
        for _ in 0..1000 {
            if let Input::Payment { c_w_id, .. } = Input::draw(Kind::Payment, 1, 1, 1, &c, &mut rng) {
                assert_eq!(c_w_id, 1);
            }
        }
        assert_eq!(
            Input::draw(Kind::StockLevel, 2, 7, 10, &c, &mut rng).kind(),
            Kind::StockLevel,
            "stock-level draws for the terminal's district"
        );
    }
}
