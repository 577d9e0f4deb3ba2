package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SecretTest {
  // pg_authid form of password "pencil" with the RFC 7677 salt, computed independently (Python
  // hashlib.pbkdf2_hmac + hmac), exactly what PostgreSQL stores for that salt.
  private static final String PENCIL =
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
          + ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

  @Test
  void parsesPgAuthidScramSecret() {
    Secret parsed = Secret.parse(PENCIL);

    assertThat(parsed).isInstanceOf(Secret.Scram.class);
    Secret.Scram scram = (Secret.Scram) parsed;
    assertThat(scram.iterations()).isEqualTo(4096);
    assertThat(scram.salt()).isEqualTo(Base64.getDecoder().decode("W22ZaJ0SNY7soEsUEjb6gQ=="));
    assertThat(scram).isEqualTo(ScramServerTest.RFC_SECRET);
    assertThat(scram.format()).isEqualTo(PENCIL);
  }

  @Test
  void derivedSecretRoundTripsThroughText() {
    Secret.Scram derived = new Secret.Plain("pencil").toScram();
    assertThat(derived.iterations()).isEqualTo(4096);
    assertThat(derived.salt()).hasSize(16);
    assertThat(Secret.parse(derived.format())).isEqualTo(derived);
    assertThat(Secret.Scram.derive("pencil")).isNotEqualTo(derived); // fresh salt each time
  }

  @Test
  void derivesFromEmptyPassword() {
    // PostgreSQL refuses empty passwords, but a users file may hold one: no crash, just a verifier.
    assertThat(new Secret.Plain("").toScram().iterations()).isEqualTo(4096);
  }

  @Test
  void parsesMd5AndPlain() {
    assertThat(Secret.parse("md520c46e3762c864548e296b33c3406aa9"))
        .isEqualTo(new Secret.Md5("md520c46e3762c864548e296b33c3406aa9"));
    assertThat(Secret.parse("pencil")).isEqualTo(new Secret.Plain("pencil"));
    assertThat(Secret.parse("")).isEqualTo(new Secret.Plain(""));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        // Like PostgreSQL's get_password_type: what does not parse is a plaintext password.
        "md520C46E3762C864548E296B33C3406AA9",
        "md520c46e3762c864548e296b33c3406aa",
        "md520c46e3762c864548e296b33c3406aa9x",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcX:AAAA",
        "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
            + ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        "SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtb"
            + "sT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        "SCRAM-SHA-256$4096:W22Z=aJ0$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
            + ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
            + ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
      })
  void malformedVerifiersArePlaintext(String text) {
    assertThat(Secret.parse(text)).isEqualTo(new Secret.Plain(text));
  }

  @Test
  void toStringNeverShowsTheSecret() {
    Secret.Scram scram = (Secret.Scram) Secret.parse(PENCIL);
    assertThat(scram.toString()).isEqualTo("Scram[iterations=4096, ***]");
    assertThat(new Secret.Plain("pencil").toString()).doesNotContain("pencil");
    assertThat(new Secret.Md5("md520c46e3762c864548e296b33c3406aa9").toString())
        .doesNotContain("20c46e");
  }

  @Test
  void scramIsImmutableAndComparesByValue() {
    Secret.Scram scram = (Secret.Scram) Secret.parse(PENCIL);
    scram.salt()[0] ^= 1;
    scram.storedKey()[0] ^= 1;
    assertThat(scram).isEqualTo(Secret.parse(PENCIL)).hasSameHashCodeAs(Secret.parse(PENCIL));

    byte[] salt = new byte[] {1, 2, 3};
    Secret.Scram made = new Secret.Scram(1, salt, new byte[32], new byte[32]);
    salt[0] = 9;
    assertThat(made.salt()).containsExactly(1, 2, 3);
  }

  @Test
  void rejectsInvalidComponents() {
    assertThatThrownBy(() -> new Secret.Scram(0, new byte[1], new byte[32], new byte[32]))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> new Secret.Scram(1, new byte[0], new byte[32], new byte[32]))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> new Secret.Scram(1, new byte[1], new byte[31], new byte[32]))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> new Secret.Md5("md5xyz")).isInstanceOf(IllegalArgumentException.class);
  }
}
