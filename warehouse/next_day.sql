-- A day in the life of the example warehouse, for the demo: new and updated orders, a
-- customer who closed their account, an employee who left. Run after build.sql with
-- `cargo run --release --example build_warehouse -- . --next-day`.
INSERT INTO orders VALUES
    (1121, 5, 'paid', 129.90, 'EUR', TIMESTAMP '2026-12-03 09:12:00', TIMESTAMP '2026-12-03 09:12:00'),
    (1122, 17, 'placed', 42.00, 'EUR', TIMESTAMP '2026-12-03 10:40:00', TIMESTAMP '2026-12-03 10:40:00');
UPDATE orders SET status = 'shipped', updated_at = TIMESTAMP '2026-12-03 11:00:00'
    WHERE order_id IN (SELECT order_id FROM orders WHERE status = 'paid' ORDER BY order_id LIMIT 3);
UPDATE customers SET plan = 'enterprise' WHERE customer_id = 8;
DELETE FROM customers WHERE customer_id = 13;
UPDATE employees SET left_on = DATE '2026-12-02' WHERE employee_id = 'E0002';
