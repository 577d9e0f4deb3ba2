package org.cryoprotect.proxy.sql;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.List;
import org.cryoprotect.proxy.sql.CacheSql.Analysis;
import org.cryoprotect.proxy.sql.CacheSql.Hint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class CacheSqlTest {

  private static List<String> relations(String sql) {
    return CacheSql.analyze(sql).relations().stream().map(Object::toString).toList();
  }

  @ParameterizedTest
  @CsvSource(
      delimiter = '|',
      value = {
        "SELECT * FROM molecules WHERE id = $1 | molecules",
        "select m.name from public.molecules m join toxicity t on t.mid = m.id | public.molecules,toxicity",
        "SELECT * FROM a, b AS x, c WHERE a.id = 1 | a,b,c",
        "SELECT * FROM a JOIN b ON a.x = b.x, c | a,b,c",
        "SELECT * FROM (a JOIN b USING (id)) , c | a,b,c",
        "SELECT * FROM (SELECT * FROM inner_t) s, outer_t | inner_t,outer_t",
        "SELECT (SELECT max(v) FROM x), y FROM z ORDER BY 1, 2 | x,z",
        "WITH w AS (SELECT * FROM base) SELECT * FROM w | base",
        "WITH w(a, b) AS MATERIALIZED (SELECT 1, 2 FROM base) SELECT * FROM w, other | base,other",
        "TABLE t1 UNION TABLE s.t2 | t1,s.t2",
        "SELECT * FROM \"Mixed Case\" | Mixed Case",
        "SELECT * FROM ONLY p, LATERAL unnest(p.arr) u | p",
        "SELECT * FROM generate_series(1, 3) g CROSS JOIN LATERAL (SELECT * FROM q) s | q",
        "SELECT 'FROM fake' AS s, $$FROM x$$ FROM real_t -- FROM comment | real_t",
        "SELECT * FROM db.sch.rel | sch.rel",
        "SELECT * FROM t WHERE x IS DISTINCT FROM y | t",
      })
  void readsEveryRelation(String sql, String expected) {
    assertThat(relations(sql)).containsExactly(expected.split(","));
  }

  @Test
  void momentWordsAndLiteralsAreDenied() {
    assertThat(CacheSql.analyze("SELECT current_timestamp FROM t").denied()).isNotNull();
    assertThat(CacheSql.analyze("SELECT 'now'::timestamptz FROM t").denied()).isNotNull();
    assertThat(CacheSql.analyze("SELECT * FROM t WHERE d > CURRENT_DATE").denied()).isNotNull();
    assertThat(CacheSql.analyze("SELECT 'current_date' FROM t").denied()).isNull();
    assertThat(CacheSql.analyze("SELECT * FROM t WHERE s = 'x").denied()).isNotNull();
  }

  @Test
  void aFirstLookTurnsWritesAway() {
    assertThat(CacheSql.looksLikeRead("  /* c */ -- x\n select 1")).isTrue();
    assertThat(CacheSql.looksLikeRead("WITH x AS (SELECT 1) SELECT * FROM x")).isTrue();
    assertThat(CacheSql.looksLikeRead("(SELECT 1)")).isTrue();
    assertThat(CacheSql.looksLikeRead("TABLE t")).isTrue();
    assertThat(CacheSql.looksLikeRead("UPDATE t SET v = 1")).isFalse();
    assertThat(CacheSql.looksLikeRead("selected")).isFalse();
    assertThat(CacheSql.looksLikeRead("select_x()")).isFalse();
    assertThat(CacheSql.looksLikeRead("BEGIN")).isFalse();
    assertThat(CacheSql.plainRead("SELECT abalance FROM pgbench_accounts WHERE aid = 5")).isTrue();
    assertThat(CacheSql.plainRead("SELECT my_write()")).isFalse();
    assertThat(CacheSql.plainRead("SELECT 1; DELETE FROM t")).isFalse();
    assertThat(CacheSql.plainRead(" with u AS (DELETE FROM t RETURNING 1) SELECT 1")).isFalse();
    assertThat(CacheSql.plainRead("UPDATE t SET v = 1")).isFalse();
  }

  @Test
  void hintsAndShapes() {
    Analysis a = CacheSql.analyze("/* cryoproxy:cache ttl=30s */ SELECT 1");
    assertThat(a.hint()).isEqualTo(Hint.CACHE);
    assertThat(a.hintTtl()).isEqualTo(Duration.ofSeconds(30));
    assertThat(CacheSql.analyze("SELECT * FROM t /* cryoproxy:nocache */").denied())
        .isEqualTo("nocache hint");
    assertThat(CacheSql.analyze("SELECT 1; SELECT 2").readShape()).isTrue();
    assertThat(CacheSql.analyze("SHOW work_mem").readShape()).isFalse();
    assertThat(CacheSql.analyze("SELECT 1; UPDATE t SET x = 1").readShape()).isFalse();
    assertThat(CacheSql.analyze("DO $$ BEGIN END $$").opaque()).isTrue();
    assertThat(CacheSql.analyze("call p()").opaque()).isTrue();
    assertThat(CacheSql.analyze("UPDATE s.t SET v = 1").mentioned())
        .extracting(Object::toString)
        .contains("s.t");
  }
}
