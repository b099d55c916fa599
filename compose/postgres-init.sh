#!/usr/bin/env bash
# Run once by the official postgres image, on its first start with an empty data volume
# (/docker-entrypoint-initdb.d/): one database and one login role per service, the role owning
# its database and nothing else, as ./stack's pg_up does natively. The roles' passwords come
# from USER_DB_PASSWORD, PRODUCT_DB_PASSWORD and ORDER_DB_PASSWORD (compose.yml).
#
# In a subshell: the image executes an executable script but sources one that is not, and these
# shell options must not leak into its entrypoint then; a failure still stops the entrypoint.
(
    set -euo pipefail

    admin() {
        psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres "$@"
    }

    # No role but the superuser may connect to the administrative databases: the service roles
    # would have CONNECT there through PUBLIC. Each gets CONNECT on its own database only.
    admin -c 'revoke connect on database postgres, template1 from public'

    for service in user product order; do
        password_variable="${service^^}_DB_PASSWORD"
        password=${!password_variable:?"$password_variable is not set"}
        admin -v role="${service}_svc" -v db="${service}_db" -v password="$password" <<'SQL'
select format('create role %I login', :'role') where not exists (select from pg_roles where rolname = :'role') \gexec
alter role :"role" password :'password';
select format('create database %I owner %I', :'db', :'role') where not exists (select from pg_database where datname = :'db') \gexec
revoke all on database :"db" from public;
grant connect, temporary on database :"db" to :"role";
SQL
    done
)
