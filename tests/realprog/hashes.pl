#!/usr/bin/perl
# Input for the realprog perl test: run by perl with and without LD_PRELOAD=libtinymalloc.so;
# the output must be identical. Builds a hash of 500k generated keys with nested hashes and
# arrays, sorts, digests with Digest::MD5, deletes half, rebuilds, and does string-heavy
# work (join/split/sprintf/regex, pack/unpack). Every value comes from a deterministic
# generator and every hash is printed in sorted key order, so the output never depends on
# Perl's hash seed.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $N = shift // 500_000;

# A 32-bit LCG, deterministic on every run.
my $seed = 12345;
# The low bits of a power-of-two LCG are poor: return bits 16..30.
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 16; }

my @syll = qw(ka lo mi nu ra te zo qui ste bar fen dor ix ul pra von);
sub word {
  my $n = 1 + rnd() % 4;
  return join '', map { $syll[rnd() % @syll] } 1 .. $n;
}

# Phase 1: a big flat hash and nested structures.
my %h;
my %groups;
for my $i (1 .. $N) {
  my $k = sprintf('%s-%06x', word(), $i * 2654435761 % 16777216);
  $h{$k} = { id => $i, tags => [ map { word() } 1 .. ($i % 3) ], score => rnd() % 1000 };
  push @{ $groups{ substr($k, 0, 2) } }, $i;
}
my @keys = sort keys %h;
my $ctx = Digest::MD5->new;
$ctx->add($_, ':', $h{$_}{id}, ':', $h{$_}{score}, ':', join(',', @{ $h{$_}{tags} }), "\n") for @keys;
printf "phase1 keys=%d groups=%d first=%s last=%s md5=%s\n", scalar(@keys), scalar(keys %groups), $keys[0],
  $keys[-1], $ctx->hexdigest;
for my $g ((sort keys %groups)[0 .. 4]) {
  my $list = $groups{$g};
  printf "  group %s n=%d sum=%d\n", $g, scalar(@$list), eval { my $s = 0; $s += $_ for @$list; $s };
}

# Phase 2: delete every other key (in sorted order), then rebuild with new, longer values.
my $deleted = 0;
for (my $i = 0; $i < @keys; $i += 2) {
  delete $h{ $keys[$i] };
  $deleted++;
}
for my $i (1 .. $N / 2) {
  my $k = 'r' . word() . $i;
  $h{$k} = { id => -$i, tags => [ ('x' x (1 + $i % 40)), word() ], score => $i % 977 };
}
# Sort by (score, key) through packed sort keys: a plain string sort, no Perl comparator.
@keys = map { substr($_, 4) } sort map { sprintf('%03d %s', $h{$_}{score}, $_) } keys %h;
$ctx = Digest::MD5->new;
$ctx->add($_, '=', $h{$_}{score}, "\n") for @keys;
printf "phase2 deleted=%d size=%d md5=%s top=%s\n", $deleted, scalar(@keys), $ctx->hexdigest,
  join(',', @keys[0 .. 2]);

# Phase 3: strings: a large text built by repeated appends, split, regex captures, pack/unpack.
my $text = '';
$text .= word() . ($_ % 10 == 0 ? "\n" : ' ') for 1 .. 200_000;
my @lines = split /\n/, $text;
my %freq;
$freq{$1}++ while $text =~ /\b(\w{6,})\b/g;
my @top = grep { defined } (sort { $freq{$b} <=> $freq{$a} or $a cmp $b } keys %freq)[0 .. 4];
my $packed = pack('N*', map { rnd() * 65536 + rnd() } 1 .. 100_000);
my $sum = 0;
$sum = ($sum + $_) % 4294967296 for unpack('N*', $packed);
printf "phase3 text=%d lines=%d longwords=%d top=%s md5=%s packsum=%d\n", length($text), scalar(@lines),
  scalar(keys %freq), join(',', map { "$_:$freq{$_}" } @top), md5_hex($text), $sum;

# Phase 4: free everything and rebuild a smaller table from scratch, in a loop.
my $acc = '';
for my $round (1 .. 3) {
  %h = ();
  $h{ word() . $_ } = [ (rnd()) x ($_ % 7) ] for 1 .. 40_000;
  my $n = 0;
  $n += @{ $h{$_} } for keys %h;
  $acc .= "$round:" . scalar(keys %h) . ":$n ";
}
print "phase4 $acc\n";
print "done\n";
