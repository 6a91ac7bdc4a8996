-- Orders a customer should hear about: paid, shipped or delivered, with who to tell.
SELECT
    o.order_id,
    o.status,
    o.total_amount,
    o.currency,
    o.placed_at,
    c.email,
    c.full_name
FROM orders AS o
JOIN customers AS c USING (customer_id)
WHERE o.status IN ('paid', 'shipped', 'delivered')
