package org.cryoprotect.proxy.pool;

import static org.assertj.core.api.Assertions.assertThat;

import org.cryoprotect.proxy.pool.SqlScan.Pin;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SqlScanTest {

  @ParameterizedTest
  @ValueSource(
      strings = {
        "SELECT 1",
        "select abalance from pgbench_accounts where aid = 42;",
        "UPDATE t SET x = 1 WHERE id = 2",
        "INSERT INTO t VALUES ('SET search_path = x')",
        "BEGIN",
        "COMMIT;",
        "SET LOCAL statement_timeout = '1s'",
        "SET TRANSACTION READ ONLY",
        "-- SET search_path = x\nSELECT 1",
        "/* LISTEN x */ SELECT 1",
        "SELECT $tag$ RESET ALL $tag$",
        "SELECT pg_advisory_xact_lock(1)",
        "CREATE TABLE temp_things (a int)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "PREPARE TRANSACTION 'x'"
      })
  void ordinaryStatementsHaveNoEffects(String sql) {
    assertThat(SqlScan.scan(sql).isNone()).as(sql).isTrue();
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "SET search_path = other",
        "set statement_timeout to 5",
        "  SET SESSION default_transaction_read_only = on",
        "SET ROLE reader",
        "RESET ALL",
        "SELECT set_config('search_path', '', false)",
        "SELECT 1; SET TimeZone = 'UTC'",
        "/* comment */ SET work_mem = '8MB'"
      })
  void sessionChangesAreSeen(String sql) {
    assertThat(SqlScan.scan(sql).changesSession()).as(sql).isTrue();
  }

  @Test
  void pinsAndTheirReleases() {
    assertThat(SqlScan.scan("LISTEN jobs").pins()).containsExactly(Pin.LISTEN);
    assertThat(SqlScan.scan("UNLISTEN *").releases()).containsExactly(Pin.LISTEN);
    assertThat(SqlScan.scan("UNLISTEN jobs").releases()).isEmpty();
    assertThat(SqlScan.scan("CREATE TEMP TABLE x (a int)").pins()).containsExactly(Pin.TEMP_TABLE);
    assertThat(SqlScan.scan("create local temporary table x (a int)").pins())
        .containsExactly(Pin.TEMP_TABLE);
    assertThat(SqlScan.scan("DISCARD TEMP").releases()).containsExactly(Pin.TEMP_TABLE);
    assertThat(SqlScan.scan("SELECT pg_advisory_lock(7)").pins())
        .containsExactly(Pin.ADVISORY_LOCK);
    assertThat(SqlScan.scan("SELECT pg_try_advisory_lock_shared(7)").pins())
        .containsExactly(Pin.ADVISORY_LOCK);
    assertThat(SqlScan.scan("SELECT pg_advisory_unlock_all()").releases())
        .containsExactly(Pin.ADVISORY_LOCK);
    assertThat(SqlScan.scan("DECLARE c CURSOR WITH HOLD FOR SELECT 1").pins())
        .containsExactly(Pin.HOLD_CURSOR);
    assertThat(SqlScan.scan("DECLARE c CURSOR FOR SELECT 1").pins()).isEmpty();
    assertThat(SqlScan.scan("CLOSE ALL").releases()).containsExactly(Pin.HOLD_CURSOR);
    assertThat(SqlScan.scan("PREPARE s AS SELECT 1").pins()).containsExactly(Pin.PREPARE);
    assertThat(SqlScan.scan("DEALLOCATE ALL").dropsPreparedStatements()).isTrue();
    assertThat(SqlScan.scan("DEALLOCATE PREPARE ALL").releases()).containsExactly(Pin.PREPARE);
    SqlScan.Effects discard = SqlScan.scan("DISCARD ALL");
    assertThat(discard.releases()).containsExactlyInAnyOrder(Pin.values());
    assertThat(discard.dropsPreparedStatements()).isTrue();
  }
}
