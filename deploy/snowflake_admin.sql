-- Snowflake objects for the CDC pipelines. An administrator runs this once (and step 7 once per
-- pipeline) in a worksheet or with SnowSQL, as ACCOUNTADMIN (the storage integration, the network
-- policy) and SYSADMIN / SECURITYADMIN (the rest; the script switches roles itself).
--
-- Replace the values in angle brackets first:
--   <STAGE_URL>             terraform output snowflake_stage_url        e.g. s3://cdc-prod-stage-123/cdc/
--   <STAGE_ROLE_ARN>        terraform output snowflake_stage_role_arn
--   <EXTERNAL_ID>           a random string you choose (also terraform snowflake_storage_external_id)
--   <RSA_PUBLIC_KEY>        the public key of the pipeline's key pair, without the BEGIN/END lines
--   <VPC_ENDPOINT_ID>       terraform output snowflake_endpoint_id      e.g. vpce-0123456789abcdef0
-- The names (RAW, CDC_LOAD, CDC_STAGE, CDC_WH, CDC_LOADER, CDC_ORDERS) match
-- terraform/examples/complete; if you change one, change the pipeline's settings with it:
--   CDC_SNOWFLAKE_DATABASE = RAW                    CDC_SNOWFLAKE_LOAD_SCHEMA = CDC_LOAD
--   CDC_SNOWFLAKE_STAGE    = RAW.CDC_LOAD.CDC_STAGE CDC_SNOWFLAKE_WAREHOUSE   = CDC_WH
--   CDC_SNOWFLAKE_ROLE     = CDC_LOADER             Vault secret at CDC_VAULT_SNOWFLAKE_PATH: user = CDC_ORDERS
--
-- The key pair (the private key goes to Vault, never into a file in the repository):
--   openssl genrsa 2048 | openssl pkcs8 -topk8 -v2 aes256 -inform PEM -out rsa_key.p8   # asks a passphrase
--   openssl rsa -in rsa_key.p8 -pubout -out rsa_key.pub                                 # <RSA_PUBLIC_KEY>
--   vault kv put -mount=secret cdc/orders/snowflake user=CDC_ORDERS \
--       private_key=@rsa_key.p8 private_key_passphrase=...   (then shred rsa_key.p8)
-- An unencrypted key (openssl pkcs8 -topk8 -nocrypt) needs no private_key_passphrase.

-- 1. Warehouse, database and the load schema (where the transient load tables and the stage live).
USE ROLE SYSADMIN;
CREATE WAREHOUSE IF NOT EXISTS CDC_WH
  WAREHOUSE_SIZE = XSMALL AUTO_SUSPEND = 60 AUTO_RESUME = TRUE INITIALLY_SUSPENDED = TRUE
  COMMENT = 'CDC pipelines: COPY and MERGE of the staged windows';
CREATE DATABASE IF NOT EXISTS RAW COMMENT = 'Replicated from Aurora PostgreSQL by the CDC pipelines';
CREATE SCHEMA IF NOT EXISTS RAW.CDC_LOAD WITH MANAGED ACCESS
  COMMENT = 'CDC load tables, column registry and the external stage';

-- 2. The storage integration: Snowflake reads the S3 stage by assuming <STAGE_ROLE_ARN>.
USE ROLE ACCOUNTADMIN;
CREATE STORAGE INTEGRATION IF NOT EXISTS CDC_S3
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = '<STAGE_ROLE_ARN>'
  STORAGE_AWS_EXTERNAL_ID = '<EXTERNAL_ID>'
  STORAGE_ALLOWED_LOCATIONS = ('<STAGE_URL>')
  COMMENT = 'CDC stage bucket (read only)';
-- Copy STORAGE_AWS_IAM_USER_ARN into terraform's snowflake_storage_iam_user_arn (and <EXTERNAL_ID>
-- into snowflake_storage_external_id), then `terraform apply`: that creates the role.
DESC INTEGRATION CDC_S3;
GRANT USAGE ON INTEGRATION CDC_S3 TO ROLE SYSADMIN;

-- 3. The external stage over the bucket prefix. Its URL is CDC_STAGE_URL: the pipelines COPY
--    from @RAW.CDC_LOAD.CDC_STAGE/<pipeline>/windows/... .
USE ROLE SYSADMIN;
CREATE STAGE IF NOT EXISTS RAW.CDC_LOAD.CDC_STAGE
  URL = '<STAGE_URL>'
  STORAGE_INTEGRATION = CDC_S3
  FILE_FORMAT = (TYPE = PARQUET)
  COMMENT = 'CDC staged windows and snapshots (Parquet)';

-- 4. The role the pipelines work as. It creates the target schemas and tables (and so owns them:
--    ADD COLUMN, SWAP WITH after a snapshot), the load tables and the column registry.
USE ROLE SECURITYADMIN;
CREATE ROLE IF NOT EXISTS CDC_LOADER COMMENT = 'CDC pipelines: write the replicated tables';
GRANT ROLE CDC_LOADER TO ROLE SYSADMIN;  -- administrators keep control of what it creates
GRANT USAGE ON WAREHOUSE CDC_WH TO ROLE CDC_LOADER;
GRANT USAGE, CREATE SCHEMA ON DATABASE RAW TO ROLE CDC_LOADER;
GRANT USAGE, CREATE TABLE ON SCHEMA RAW.CDC_LOAD TO ROLE CDC_LOADER;
GRANT USAGE ON STAGE RAW.CDC_LOAD.CDC_STAGE TO ROLE CDC_LOADER;
-- Source schema public lands in RAW.PUBLIC, which every new database already has.
GRANT USAGE, CREATE TABLE ON SCHEMA RAW.PUBLIC TO ROLE CDC_LOADER;

-- 5. Readers. A snapshot swaps a fresh table in, and SWAP WITH moves grants with the table, so
--    grant on future tables rather than on each table.
CREATE ROLE IF NOT EXISTS CDC_READER COMMENT = 'Read the replicated tables';
GRANT USAGE ON DATABASE RAW TO ROLE CDC_READER;
GRANT USAGE ON FUTURE SCHEMAS IN DATABASE RAW TO ROLE CDC_READER;
GRANT SELECT ON FUTURE TABLES IN DATABASE RAW TO ROLE CDC_READER;

-- 6. Only through the PrivateLink endpoint: a network rule on the VPC endpoint id.
USE ROLE ACCOUNTADMIN;
CREATE NETWORK RULE IF NOT EXISTS RAW.CDC_LOAD.CDC_PRIVATELINK
  MODE = INGRESS TYPE = AWSVPCEID VALUE_LIST = ('<VPC_ENDPOINT_ID>')
  COMMENT = 'The CDC VPC endpoint (terraform output snowflake_endpoint_id)';
CREATE NETWORK POLICY IF NOT EXISTS CDC_PRIVATELINK_ONLY
  ALLOWED_NETWORK_RULE_LIST = ('RAW.CDC_LOAD.CDC_PRIVATELINK')
  COMMENT = 'CDC service users log in through PrivateLink only';

-- 7. One service user per pipeline (here: orders), key-pair authentication only (no password).
USE ROLE SECURITYADMIN;
CREATE USER IF NOT EXISTS CDC_ORDERS
  TYPE = SERVICE
  DEFAULT_ROLE = CDC_LOADER
  DEFAULT_WAREHOUSE = CDC_WH
  RSA_PUBLIC_KEY = '<RSA_PUBLIC_KEY>'
  NETWORK_POLICY = CDC_PRIVATELINK_ONLY
  COMMENT = 'CDC pipeline orders (Lambda cdc-prod-orders)';
GRANT ROLE CDC_LOADER TO USER CDC_ORDERS;
-- Key rotation: set RSA_PUBLIC_KEY_2 to the new key, update the Vault secret, let one window run
-- with it, then UNSET RSA_PUBLIC_KEY:
--   ALTER USER CDC_ORDERS SET RSA_PUBLIC_KEY_2 = '<NEW_RSA_PUBLIC_KEY>';
--   ALTER USER CDC_ORDERS UNSET RSA_PUBLIC_KEY;
-- Check the fingerprint Snowflake holds against the key in Vault:
--   DESC USER CDC_ORDERS;  -- RSA_PUBLIC_KEY_FP = SHA256:...
--   openssl rsa -in rsa_key.p8 -pubout -outform DER | openssl dgst -sha256 -binary | openssl enc -base64
