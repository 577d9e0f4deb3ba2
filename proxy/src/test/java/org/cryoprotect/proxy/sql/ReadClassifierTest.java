package org.cryoprotect.proxy.sql;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.params.provider.Arguments.arguments;

import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.cryoprotect.proxy.sql.ReadClassifier.Classification;
import org.cryoprotect.proxy.sql.ReadClassifier.Hint;
import org.cryoprotect.proxy.sql.ReadClassifier.Kind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

class ReadClassifierTest {

  static Stream<String> reads() {
    return Stream.of(
        "SELECT 1",
        "select * from t where a = 1",
        "SELECT nextval('s')",
        "select 'for update' from t",
        "SELECT * FROM t FOR READ ONLY",
        "SELECT substring(s FROM 2 FOR 3) FROM t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "with recursive r(n) as (select 1 union all select n + 1 from r) select * from r",
        "VALUES (1), (2)",
        "TABLE t",
        "SHOW search_path",
        "show all",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT $$ insert $$",
        "SELECT $tag$ a $$ b $tag$, $1",
        "SELECT $1, $2 FROM t WHERE a = $3",
        "SELECT E'it\\'s; update'",
        "SELECT e'\\\\', 'x'",
        "SELECT 'it''s; delete'",
        "select \"update\" from t",
        "select \"a\"\"; insert\" from t",
        "SELECT 1; SELECT 2",
        "SELECT 1;",
        "SELECT 1;  -- c",
        "SELECT 1; /* c */ ;",
        "; SELECT 1",
        "/* a /* b */ insert */ SELECT 1",
        "-- insert\nSELECT 1",
        "SELECT 1 -- ; delete from t",
        "SELECT inserted, updated_at, deleted, merged, intox FROM t",
        "SELECT t.a FROM t, u WHERE t.id = u.id",
        "SELECT a FROM t WHERE b IN (SELECT c FROM u)",
        "SeLeCt 1",
        "SELECT 1 FOR /* nothing */ READ ONLY");
  }

  @ParameterizedTest
  @MethodSource
  void reads(String sql) {
    assertThat(ReadClassifier.classify(sql).kind()).isEqualTo(Kind.READ);
  }

  static Stream<String> others() {
    return Stream.of(
        // locking clauses
        "SELECT * FROM t FOR UPDATE",
        "select * from t for no key update",
        "select * from t for key share",
        "SELECT * FROM t FOR SHARE OF t NOWAIT",
        "SELECT * FROM t FOR /* c */ SHARE",
        "SELECT * FROM (SELECT * FROM t FOR SHARE) s",
        "WITH x AS (SELECT * FROM t FOR KEY SHARE) SELECT * FROM x",
        // writes hidden in a read
        "WITH x AS (UPDATE t SET a=1 RETURNING *) SELECT * FROM x",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
        "SELECT 1 INTO t2",
        "select * into temp t2 from t",
        "SELECT 1into t2",
        "SELECT 1 --x\rINSERT INTO t VALUES (1)",
        // more than one statement, not all reads
        "SELECT 1; INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1); SELECT 1",
        "SELECT 1; BEGIN",
        // neither reads nor read-only transactions
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "CREATE TABLE t (a int)",
        "SET search_path = x",
        "SET TRANSACTION READ ONLY",
        "BEGIN",
        "BEGIN; SELECT 1",
        "START TRANSACTION",
        "BEGIN READ WRITE",
        "BEGIN READ ONLY, READ WRITE",
        "BEGIN READ WRITE; SET TRANSACTION READ ONLY",
        "BEGIN; SET TRANSACTION READ WRITE",
        "BEGIN; SELECT 1; SET TRANSACTION READ ONLY",
        "BEGIN; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "BEGIN 'READ ONLY'",
        "START READ ONLY",
        "COMMIT",
        "ROLLBACK",
        "EXPLAIN SELECT 1",
        "EXPLAIN ANALYZE DELETE FROM t",
        "CALL p()",
        "DO $$ BEGIN PERFORM 1; END $$",
        "COPY t TO STDOUT",
        "LOCK TABLE t",
        "\"select\" 1",
        "'select'",
        // nothing to run
        "",
        "   ",
        "-- only",
        "/* only */",
        ";",
        " ; ; ",
        // unterminated
        "'abc",
        "SELECT 'abc",
        "SELECT E'abc\\'",
        "SELECT \"abc",
        "SELECT $$ abc",
        "SELECT $a$ abc $b$",
        "SELECT 1 /* abc",
        "SELECT 1 /* a /* b */",
        "BEGIN READ ONLY /* abc",
        "SELECT \"\" FROM t");
  }

  @ParameterizedTest
  @MethodSource
  void others(String sql) {
    assertThat(ReadClassifier.classify(sql).kind()).isEqualTo(Kind.OTHER);
  }

  static Stream<String> readOnlyBegins() {
    return Stream.of(
        "BEGIN READ ONLY",
        "begin read only",
        "BEGIN TRANSACTION READ ONLY",
        "BEGIN WORK READ ONLY",
        "begin transaction isolation level repeatable read, read only",
        "begin isolation level serializable, read only, deferrable",
        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        "START TRANSACTION READ ONLY",
        "start transaction read only, isolation level serializable",
        "BEGIN READ /* c */ ONLY",
        "BEGIN READ ONLY; INSERT INTO t VALUES (1)",
        "BEGIN; SET TRANSACTION READ ONLY; SELECT 1",
        "BEGIN; SET TRANSACTION READ ONLY",
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SET TRANSACTION READ ONLY",
        "START TRANSACTION; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        "BEGIN;; SET TRANSACTION READ ONLY",
        "/* cryoproxy:replica */ BEGIN READ ONLY");
  }

  @ParameterizedTest
  @MethodSource
  void readOnlyBegins(String sql) {
    assertThat(ReadClassifier.classify(sql).kind()).isEqualTo(Kind.READ_ONLY_BEGIN);
  }

  static Stream<Arguments> hints() {
    return Stream.of(
        arguments("SELECT 1", Hint.NONE),
        arguments("/* cryoproxy:replica */ SELECT 1", Hint.REPLICA),
        arguments("/*cryoproxy:primary*/ SELECT 1", Hint.PRIMARY),
        arguments("SELECT 1 /*  CryoProxy:Replica\n */", Hint.REPLICA),
        arguments("INSERT INTO t VALUES (1) /* cryoproxy:replica */", Hint.REPLICA),
        arguments("/* cryoproxy:replica */ SELECT /* cryoproxy:primary */ 1", Hint.PRIMARY),
        arguments("/* cryoproxy:primary */ SELECT /* cryoproxy:replica */ 1", Hint.PRIMARY),
        arguments("-- cryoproxy:replica\nSELECT 1", Hint.NONE),
        arguments("/* cryoproxy:replica please */ SELECT 1", Hint.NONE),
        arguments("/* /* cryoproxy:replica */ */ SELECT 1", Hint.NONE),
        arguments("SELECT '/* cryoproxy:replica */'", Hint.NONE),
        arguments("SELECT $$/* cryoproxy:replica */$$", Hint.NONE),
        arguments("/* cryoproxy:replica */", Hint.REPLICA));
  }

  @ParameterizedTest
  @MethodSource
  void hints(String sql, Hint hint) {
    assertThat(ReadClassifier.classify(sql).hint()).isEqualTo(hint);
  }

  @Test
  void hintOnlyTextIsStillOther() {
    Classification c = ReadClassifier.classify("/* cryoproxy:replica */");
    assertThat(c.kind()).isEqualTo(Kind.OTHER);
    assertThat(c.hint()).isEqualTo(Hint.REPLICA);
  }

  static Stream<Arguments> functions() {
    return Stream.of(
        arguments("SELECT nextval('s')", List.of("nextval")),
        arguments("SELECT public.my_fn(1)", List.of("my_fn")),
        arguments("SELECT \"public\".\"My Fn\"(1)", List.of("My Fn")),
        arguments("SELECT \"MyFn\"(1)", List.of("MyFn")),
        arguments("SELECT \"a\"\"b\"(1)", List.of("a\"b")),
        arguments("SELECT count (*) FROM t", List.of("count")),
        arguments("SELECT count /* c */ (*) FROM t", List.of("count")),
        arguments("SELECT count\n-- c\n(*) FROM t", List.of("count")),
        arguments("SELECT Now(), NOW(), now()", List.of("now")),
        arguments("SELECT lower(upper(x)), lower(y) FROM t", List.of("lower", "upper")),
        arguments("SELECT f$1(2)", List.of("f$1")),
        arguments("SELECT ÄBC(1)", List.of("Äbc")),
        arguments(
            "SELECT coalesce(a, b), greatest(1, 2), nullif(a, 0)",
            List.of("coalesce", "greatest", "nullif")),
        arguments("SELECT \"select\"(1)", List.of("select")),
        arguments("SELECT x FROM t WHERE x IN (1,2)", List.of()),
        arguments("SELECT * FROM t WHERE EXISTS (SELECT 1) AND NOT (a OR (b))", List.of()),
        arguments("SELECT a = ANY (b), c = ALL(d), e = SOME(f) FROM t", List.of()),
        arguments("SELECT CAST(a AS int), ROW(1, 2), ARRAY(SELECT 1)", List.of()),
        arguments(
            "SELECT sum(a) FILTER (WHERE b) OVER (PARTITION BY c ORDER BY d)", List.of("sum")),
        arguments(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
            List.of("percentile_cont")),
        arguments(
            "SELECT * FROM t JOIN (u) USING (id) JOIN LATERAL (SELECT 1) s ON (true)", List.of()),
        arguments("(SELECT 1) UNION (SELECT 2) INTERSECT (SELECT 3) EXCEPT (SELECT 4)", List.of()),
        arguments("WITH x AS (SELECT 1) SELECT * FROM x", List.of()),
        arguments("SELECT CASE WHEN (a) THEN (b) ELSE (c) END", List.of()),
        arguments("VALUES (1)", List.of()),
        arguments("SELECT 'f(1)', $$g(2)$$, \"h\" (3), -- i(4)\n /* j(5) */ 1", List.of("h")),
        arguments("SELECT a (1)", List.of("a")),
        arguments("SELECT (1)", List.of()),
        arguments("SELECT 1; SELECT (2)", List.of()),
        arguments("INSERT INTO t (a) VALUES (gen_random_uuid())", List.of("t", "gen_random_uuid")),
        arguments("SELECT pg_advisory_lock(1) FOR UPDATE", List.of("pg_advisory_lock")),
        arguments("SELECT 'abc", List.of()));
  }

  @ParameterizedTest
  @MethodSource
  void functions(String sql, List<String> functions) {
    assertThat(ReadClassifier.classify(sql).functions()).containsExactlyElementsOf(functions);
  }

  @Test
  void functionsAreReportedForEveryKind() {
    assertThat(ReadClassifier.classify("UPDATE t SET a = f(1)").functions()).containsExactly("f");
    assertThat(ReadClassifier.classify("BEGIN READ ONLY; SELECT g(1)").functions())
        .containsExactly("g");
    Classification c = ReadClassifier.classify("SELECT nextval('s')");
    assertThat(c.kind()).isEqualTo(Kind.READ);
    assertThat(c.functions()).containsExactly("nextval");
  }

  @Test
  void noFunctionsIsTheSharedEmptyList() {
    List<String> none = ReadClassifier.classify("SELECT 1").functions();
    assertThat(none).isEmpty();
    assertThat(none).isSameAs(List.of());
    assertThat(ReadClassifier.classify("INSERT INTO t VALUES (1)").functions()).isSameAs(none);
  }

  @Test
  void functionsCannotBeModified() {
    List<String> functions = ReadClassifier.classify("SELECT f(1)").functions();
    assertThatThrownBy(() -> functions.add("g")).isInstanceOf(UnsupportedOperationException.class);
  }

  @Test
  void longNamesAreTruncatedLikePostgresDoes() {
    String name = "f".repeat(70);
    assertThat(ReadClassifier.classify("SELECT " + name + "(1)").functions())
        .containsExactly("f".repeat(63));
    // 'é' is two UTF-8 bytes: 31 of them make 62 bytes, a 32nd would not fit
    assertThat(ReadClassifier.classify("SELECT \"" + "é".repeat(40) + "\"(1)").functions())
        .containsExactly("é".repeat(31));
    // names that differ only past the cut are the same function to the server
    assertThat(ReadClassifier.classify("SELECT " + name + "a(1), " + name + "b(2)").functions())
        .hasSize(1);
  }

  @Test
  void keywordsFoldOnlyAscii() {
    // U+017F (long s) upper-cases to 'S' in Java, but PostgreSQL does not take "ſelect" as SELECT
    assertThat(ReadClassifier.classify("ſelect 1").kind()).isEqualTo(Kind.OTHER);
  }

  @Test
  void nullIsOther() {
    Classification c = ReadClassifier.classify(null);
    assertThat(c.kind()).isEqualTo(Kind.OTHER);
    assertThat(c.hint()).isEqualTo(Hint.NONE);
    assertThat(c.functions()).isEmpty();
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "'",
        "\"",
        "$",
        "$$",
        "$a",
        "$a$",
        "$1",
        "/*",
        "/",
        "-",
        "--",
        "E'",
        "e'\\",
        "E",
        ";",
        "(",
        ")",
        "'''",
        "\"\"\"",
        "/*/",
        "*/",
        "$$$",
        "$a$$a",
        "\\",
        "\uD800",
        "\uD800(",
        "x\uD83D("
      })
  void unterminatedOrOddFragmentsDoNotThrow(String sql) {
    assertThatCode(() -> ReadClassifier.classify(sql)).doesNotThrowAnyException();
    assertThatCode(() -> ReadClassifier.classify("SELECT " + sql)).doesNotThrowAnyException();
    assertThatCode(() -> ReadClassifier.classify(sql + "x(")).doesNotThrowAnyException();
  }

  @Test
  void randomTextNeverThrows() {
    String alphabet = "'\"$;-/*()eEfor updateSHAREselect_.,0123456789 \t\n\r\\é";
    Random random = new Random(20240607L);
    for (int round = 0; round < 10_000; round++) {
      char[] text = new char[random.nextInt(40)];
      for (int k = 0; k < text.length; k++) {
        text[k] = alphabet.charAt(random.nextInt(alphabet.length()));
      }
      String sql = new String(text);
      assertThatCode(() -> ReadClassifier.classify(sql))
          .as("classify(%s)", sql)
          .doesNotThrowAnyException();
    }
  }
}
