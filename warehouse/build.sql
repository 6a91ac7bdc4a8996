-- Builds the example warehouse `warehouse/shop.duckdb` from the CSV files beside it.
-- Run from the project folder: `cargo run --release --example build_warehouse`.
CREATE OR REPLACE TABLE customers AS
    SELECT * FROM read_csv('warehouse/data/customers.csv', header = true, columns = {
        'customer_id': 'INTEGER', 'email': 'VARCHAR', 'full_name': 'VARCHAR',
        'plan': 'VARCHAR', 'country': 'VARCHAR', 'lifetime_value': 'DECIMAL(12,2)',
        'created_at': 'TIMESTAMP', 'marketing_opt_in': 'BOOLEAN'});

CREATE OR REPLACE TABLE orders AS
    SELECT * FROM read_csv('warehouse/data/orders.csv', header = true, columns = {
        'order_id': 'BIGINT', 'customer_id': 'INTEGER', 'status': 'VARCHAR',
        'total_amount': 'DECIMAL(12,2)', 'currency': 'VARCHAR',
        'placed_at': 'TIMESTAMP', 'updated_at': 'TIMESTAMP'});

CREATE OR REPLACE TABLE employees AS
    SELECT * FROM read_csv('warehouse/data/employees.csv', header = true, columns = {
        'employee_id': 'VARCHAR', 'work_email': 'VARCHAR', 'full_name': 'VARCHAR',
        'department': 'VARCHAR', 'started_on': 'DATE', 'left_on': 'DATE'});
