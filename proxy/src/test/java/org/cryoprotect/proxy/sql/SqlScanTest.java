package org.cryoprotect.proxy.sql;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.nio.charset.StandardCharsets;
import org.cryoprotect.proxy.sql.SqlScan.Pin;
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

  /** What no look at the text can judge is followed by the state probe (settings and pins). */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "DO $$ begin execute 'set search_path = s1'; end $$",
        "do language plpgsql $$ begin perform 1; end $$",
        "CALL refresh_everything()",
        "EXECUTE stmt(1)",
        "SELECT 1 AS a INTO TEMP tt",
        "select * into unlogged copy_of_t from t"
      })
  void opaqueStatementsAreProbedAfterwards(String sql) {
    assertThat(SqlScan.scan(sql).changesSession()).as(sql).isTrue();
    byte[] utf8 = sql.getBytes(StandardCharsets.UTF_8);
    ByteBuf buf = Unpooled.wrappedBuffer(utf8);
    assertThat(SqlScan.isPlain(buf, 0, utf8.length)).as(sql).isFalse();
    buf.release();
  }

  /** The common path pays nothing: pgbench's statements are plain on the byte path. */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "BEGIN;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 77;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 77;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -4321 WHERE tid = 3;",
        "UPDATE pgbench_branches SET bbalance = bbalance + -4321 WHERE bid = 1;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)"
            + " VALUES (3, 1, 77, -4321, CURRENT_TIMESTAMP);",
        "END;"
      })
  void pgbenchStatementsAreNeverProbed(String sql) {
    byte[] utf8 = sql.getBytes(StandardCharsets.UTF_8);
    ByteBuf buf = Unpooled.wrappedBuffer(utf8);
    assertThat(SqlScan.isPlain(buf, 0, utf8.length)).as(sql).isTrue();
    buf.release();
    assertThat(SqlScan.scan(sql).isNone()).as(sql).isTrue();
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

  /**
   * The byte-level fast path may say "not plain" where the String scan finds nothing (it then
   * decodes), but never "plain" where the scan finds something.
   */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "SELECT 1",
        "select abalance from pgbench_accounts where aid = 42;",
        "  \tSELECT 1 ;  \n",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1",
        "SELECT 'é' AS x",
        "SET search_path = other",
        "SELECT set_config('search_path', '', false)",
        "SELECT SET_CONFIG('a', 'b', false)",
        "SELECT pg_advisory_lock(7)",
        "select PG_ADVISORY_UNLOCK_ALL()",
        "SELECT 1; SET TimeZone = 'UTC'",
        "SELECT 1;;",
        "LISTEN jobs",
        "DISCARD ALL",
        "DEALLOCATE ALL",
        "CREATE TEMP TABLE x (a int)",
        "selecté 1",
        "ÉSELECT 1",
        "",
        "   ",
        "SELECT 1; ",
        "SELECT 1;\u00a0"
      })
  void bytePathNeverCallsPlainWhatTheScanDoesNot(String sql) {
    byte[] utf8 = sql.getBytes(StandardCharsets.UTF_8);
    ByteBuf buf = Unpooled.wrappedBuffer(new byte[] {1, 2}, utf8, new byte[] {3});
    boolean plain = SqlScan.isPlain(buf, 2, 2 + utf8.length);
    buf.release();
    if (plain) {
      assertThat(SqlScan.scan(sql).isNone()).as(sql).isTrue();
    }
    boolean asciiOrdinary = sql.chars().allMatch(c -> c < 0x80) && SqlScan.scan(sql).isNone();
    if (asciiOrdinary && !sql.isBlank() && !sql.contains("$") && sql.indexOf(';') < 0) {
      assertThat(plain).as(sql).isTrue();
    }
  }

  @Test
  void plainQueryFramesAreJudgedWithoutDecoding() {
    assertThat(isPlainQuery("SELECT abalance FROM t WHERE aid = 1;\0", 0)).isTrue();
    assertThat(isPlainQuery("SET work_mem = '8MB'\0", 0)).isFalse();
    assertThat(isPlainQuery("SELECT 1\0", 1)).isFalse(); // unterminated
    assertThat(isPlainQuery("SELECT 1\0SET x\0", 0)).isFalse(); // two strings
  }

  private static boolean isPlainQuery(String body, int cut) {
    byte[] utf8 = body.getBytes(StandardCharsets.UTF_8);
    ByteBuf frame = Unpooled.buffer();
    frame.writeByte('Q').writeInt(4 + utf8.length).writeBytes(utf8);
    frame.writerIndex(frame.writerIndex() - cut);
    try {
      return SqlScan.isPlainQuery(frame);
    } finally {
      frame.release();
    }
  }
}
