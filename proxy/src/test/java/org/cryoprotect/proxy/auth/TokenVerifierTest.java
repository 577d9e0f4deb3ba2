package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.auth0.jwt.JWT;
import com.auth0.jwt.algorithms.Algorithm;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.cryoprotect.proxy.config.ProxyConfig.Jwt;
import org.cryoprotect.proxy.config.ProxyConfig.PlaintextPolicy;
import org.cryoprotect.proxy.config.ProxyConfig.RoleRule;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The verification cache: a hit skips the signature, never the clock or the revocation list. */
class TokenVerifierTest {
  static final String SECRET = "a-test-secret-of-at-least-32-bytes!!";
  @TempDir Path dir;

  /** A clock the test moves. */
  static final class MovingClock extends Clock {
    Instant now = Instant.parse("2026-12-02T12:00:00Z");

    @Override
    public ZoneId getZone() {
      return ZoneOffset.UTC;
    }

    @Override
    public Clock withZone(ZoneId zone) {
      return this;
    }

    @Override
    public Instant instant() {
      return now;
    }
  }

  final MovingClock clock = new MovingClock();
  final Revocations revocations = Revocations.none();

  TokenVerifier verifier() throws Exception {
    Path key = dir.resolve("claims.key");
    Files.writeString(key, "ab".repeat(32), StandardCharsets.US_ASCII);
    Jwt config =
        new Jwt(
            List.of("authenticator"),
            PlaintextPolicy.LOOPBACK,
            null,
            SECRET,
            List.of("HS256"),
            null,
            null,
            Duration.ZERO,
            8192,
            "role",
            "scope",
            Map.of("authenticated", List.of(new RoleRule(null, "authenticated"))),
            key,
            Duration.ofSeconds(10),
            List.of());
    return new TokenVerifier(config, clock, revocations);
  }

  String token(String jti, Duration life) {
    return JWT.create()
        .withSubject("someone")
        .withClaim("role", "authenticated")
        .withJWTId(jti)
        .withIssuedAt(clock.now)
        .withExpiresAt(clock.now.plus(life))
        .sign(Algorithm.HMAC256(SECRET));
  }

  @Test
  void theSecondLoginWithATokenIsAnsweredFromTheCache() throws Exception {
    TokenVerifier v = verifier();
    String t = token("j1", Duration.ofMinutes(5));
    TokenVerifier.Verified first = v.verify(t);
    TokenVerifier.Verified second = v.verify(t);
    assertThat(first.cached()).isFalse();
    assertThat(second.cached()).isTrue();
    assertThat(second.role()).isEqualTo("authenticated");
    assertThat(second.claims()).isEqualTo(first.claims());
    assertThat(second.claimsSignature()).isEqualTo(first.claimsSignature());
  }

  @Test
  void aCachedTokenExpiresWithTheClock() throws Exception {
    TokenVerifier v = verifier();
    String t = token("j2", Duration.ofMinutes(5));
    v.verify(t);
    clock.now = clock.now.plus(Duration.ofMinutes(5));
    assertThatThrownBy(() -> v.verify(t))
        .isInstanceOfSatisfying(
            TokenVerifier.Rejected.class,
            e -> assertThat(e.reason()).isEqualTo(TokenVerifier.Reason.EXPIRED));
  }

  @Test
  void aCachedTokenRevokedAfterItsLoginIsRefused() throws Exception {
    TokenVerifier v = verifier();
    String t = token("j3", Duration.ofMinutes(5));
    TokenVerifier.Verified session = v.verify(t);
    assertThat(v.revoked(session)).isFalse();
    revocations.replace("db", Set.of("j3"));
    assertThatThrownBy(() -> v.verify(t))
        .isInstanceOfSatisfying(
            TokenVerifier.Rejected.class,
            e -> assertThat(e.reason()).isEqualTo(TokenVerifier.Reason.REVOKED));
    assertThat(v.revoked(session)).as("the session logged in before ends too").isTrue();
    // A token revoked before its first login is refused by the full check as well.
    revocations.replace("db", Set.of("j3", "j4"));
    assertThatThrownBy(() -> verifier().verify(token("j4", Duration.ofMinutes(5))))
        .isInstanceOfSatisfying(
            TokenVerifier.Rejected.class,
            e -> assertThat(e.reason()).isEqualTo(TokenVerifier.Reason.REVOKED));
  }

  @Test
  void aTamperedCopyOfACachedTokenIsNotAHit() throws Exception {
    TokenVerifier v = verifier();
    String t = token("j5", Duration.ofMinutes(5));
    v.verify(t);
    String[] parts = t.split("\\.");
    String forged = parts[0] + "." + parts[1] + "." + parts[2].substring(1) + "A";
    assertThatThrownBy(() -> v.verify(forged)).isInstanceOf(TokenVerifier.Rejected.class);
  }

  @Test
  void everyRefusalReasonIsAnExportedMetricLabel() {
    for (TokenVerifier.Reason r : TokenVerifier.Reason.values()) {
      assertThat(org.cryoprotect.proxy.metrics.ProxyMetrics.TOKEN_REJECT_REASONS)
          .contains(r.label());
    }
  }
}
