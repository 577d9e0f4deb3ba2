package org.cryoprotect.proxy.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.auth0.jwt.JWT;
import com.auth0.jwt.algorithms.Algorithm;
import com.auth0.jwt.exceptions.SignatureVerificationException;
import com.auth0.jwt.interfaces.DecodedJWT;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;
import java.util.List;
import org.cryoprotect.proxy.auth.Jwk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import picocli.CommandLine;

/**
 * {@code cryoproxy keys generate} and {@code cryoproxy token issue}: the key files, and tokens that
 * verify with the published JWKS entry (and with nothing else).
 */
class KeysAndTokensTest {
  @TempDir Path dir;

  record Run(int exit, String out, String err) {}

  static Run generate(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int exit = new CommandLine(new Keys.Generate(print(out), print(err))).execute(args);
    return new Run(
        exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  static Run issue(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int exit = new CommandLine(new Token.Issue(print(out), print(err))).execute(args);
    return new Run(
        exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  private static PrintStream print(ByteArrayOutputStream bytes) {
    return new PrintStream(bytes, true, StandardCharsets.UTF_8);
  }

  @ParameterizedTest
  @ValueSource(strings = {"ES256", "RS256"})
  void aGeneratedKeySignsTokensThatItsJwksEntryVerifies(String alg) throws Exception {
    Run made = generate("--alg", alg, "--out", dir.toString(), "--kid", "k1");
    assertThat(made.exit()).as(made.err()).isZero();
    Path privateFile = dir.resolve("k1.jwk.json");
    assertThat(Files.getPosixFilePermissions(privateFile))
        .isEqualTo(PosixFilePermissions.fromString("rw-------"));
    assertThat(Files.getPosixFilePermissions(dir.resolve("claims.key")))
        .isEqualTo(PosixFilePermissions.fromString("rw-------"));
    assertThat(HexFormat.of().parseHex(Files.readString(dir.resolve("claims.key")).trim()))
        .hasSize(32);
    JsonNode jwks = Jwk.json().readTree(dir.resolve("jwks.json").toFile());
    assertThat(jwks.path("keys")).hasSize(1);
    JsonNode published = jwks.path("keys").get(0);
    assertThat(published.path("kid").asText()).isEqualTo("k1");
    assertThat(published.has("d")).as("no private member in the JWKS").isFalse();

    Run minted =
        issue(
            "--key", privateFile.toString(),
            "--role", "service_role",
            "--scope", "cryo:read",
            "--scope", "cryo:write",
            "--sub", "svc-batch",
            "--ttl", "15m",
            "--iss", "cryoproxy",
            "--aud", "cryoprotect");
    assertThat(minted.exit()).as(minted.err()).isZero();
    String token = minted.out().trim();
    Algorithm verifier =
        alg.equals("ES256")
            ? Algorithm.ECDSA256((ECPublicKey) Jwk.publicKey(published), null)
            : Algorithm.RSA256((RSAPublicKey) Jwk.publicKey(published), null);
    DecodedJWT decoded =
        JWT.require(verifier)
            .withIssuer("cryoproxy")
            .withAudience("cryoprotect")
            .build()
            .verify(token);
    assertThat(decoded.getAlgorithm()).isEqualTo(alg);
    assertThat(decoded.getKeyId()).isEqualTo("k1");
    assertThat(decoded.getSubject()).isEqualTo("svc-batch");
    assertThat(decoded.getClaim("role").asString()).isEqualTo("service_role");
    assertThat(decoded.getClaim("scope").asString()).isEqualTo("cryo:read cryo:write");
    assertThat(decoded.getId()).isNotBlank();
    assertThat(Duration.between(Instant.now(), decoded.getExpiresAtAsInstant()))
        .isBetween(Duration.ofMinutes(14), Duration.ofMinutes(15));

    // A second key joins the JWKS (rotation); tokens of one do not verify with the other.
    Run second = generate("--alg", alg, "--out", dir.toString(), "--kid", "k2");
    assertThat(second.exit()).as(second.err()).isZero();
    JsonNode both = Jwk.json().readTree(dir.resolve("jwks.json").toFile());
    assertThat(both.path("keys").findValuesAsText("kid")).containsExactly("k1", "k2");
    String other =
        issue("--key", dir.resolve("k2.jwk.json").toString(), "--role", "anon", "--sub", "x")
            .out()
            .trim();
    assertThatThrownBy(() -> JWT.require(verifier).build().verify(other))
        .isInstanceOf(SignatureVerificationException.class);
  }

  @Test
  void badInputExitsTwoWithTheReason() throws Exception {
    assertThat(generate("--alg", "HS256", "--out", dir.toString()).err())
        .contains("--alg must be ES256 or RS256");
    assertThat(generate("--alg", "ES256", "--out", dir.toString(), "--kid", "k").exit()).isZero();
    Run again = generate("--alg", "ES256", "--out", dir.toString(), "--kid", "k");
    assertThat(again.exit()).isEqualTo(2);
    assertThat(again.err()).contains("exists");
    Run badTtl =
        issue(
            "--key",
            dir.resolve("k.jwk.json").toString(),
            "--role",
            "r",
            "--sub",
            "s",
            "--ttl",
            "soon");
    assertThat(badTtl.exit()).isEqualTo(2);
    assertThat(badTtl.err()).contains("--ttl");
    Run noKey = issue("--key", dir.resolve("missing.json").toString(), "--role", "r", "--sub", "s");
    assertThat(noKey.exit()).isEqualTo(2);
    assertThat(List.of(Token.duration("90s"), Token.duration("1h")))
        .containsExactly(Duration.ofSeconds(90), Duration.ofHours(1));
  }
}
